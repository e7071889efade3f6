/*
** fuzz_frames.c — the host's reader of the frames a child writes on its
** result pipe (pfp__frame_reader_feed).
**
** A child can die mid-write or write anything at all, so the reader must
** cope with every byte stream.  Each input becomes a stream, which is fed
** whole, one byte at a time, in chunks whose sizes come from the input (also
** with results taken over as they arrive, as pfp-run streams big ones) and,
** for short streams, split in two at every position.  Every way of feeding
** must end in the same state, and that state must be what a plain reference
** decoder of the whole stream expects.
**
** Input: byte 0 picks the mode (bit 0: raw bytes or frames built from a
** description, see build_frames; bit 1: a reused worker's pipe, where
** output and job-end frames are allowed and each job-end hands the job's
** frames to a callback), bytes 1-2 seed the chunk sizes, the rest is the
** stream or its description.
*/
#include <string.h>

#include "fuzz.h"
#include "pfp_internal.h"

/* ---- the reference decoder ------------------------------------------- */

enum { SLOT_NAME, SLOT_RESULT, SLOT_ERROR, SLOT_OUT, SLOT_ERR, SLOTS };
#define SLOT_JOB_END SLOTS

typedef struct expected {
  const unsigned char *slot[SLOTS];
  size_t slot_len[SLOTS];
  int protocol_error;
  int partial;
  pfp__buf jobs; /* every finished job, as log_job writes it */
} expected;

static int slot_of(int type, int reuse) {
  if (type == PFP__FRAME_NAME)
    return SLOT_NAME;
  if (type == PFP__FRAME_RESULT || type == PFP__FRAME_RETURNED)
    return SLOT_RESULT;
  if (type == PFP__FRAME_ERROR)
    return SLOT_ERROR;
  if (!reuse)
    return -1;
  return type == PFP__FRAME_STDOUT    ? SLOT_OUT
         : type == PFP__FRAME_STDERR  ? SLOT_ERR
         : type == PFP__FRAME_JOB_END ? SLOT_JOB_END
                                      : -1;
}

static void put(pfp__buf *b, const void *p, size_t n);

/* Appends one finished job's fields to a log: for each, whether it came and
** its bytes.  The name and the error keep no length in the reader, so they
** count up to their first NUL. */
static void log_field(pfp__buf *log, const void *data, size_t len) {
  unsigned char present = data != NULL;
  put(log, &present, 1);
  put(log, &len, sizeof len);
  if (len > 0)
    put(log, data, len);
}

static void log_job(pfp__buf *log, const void *const field[SLOTS],
                    const size_t len[SLOTS]) {
  for (int k = 0; k < SLOTS; k++) {
    size_t n = len[k];
    if (field[k] != NULL && (k == SLOT_NAME || k == SLOT_ERROR))
      n = strnlen(field[k], n);
    log_field(log, field[k], n);
  }
}

/* Where a run that streams results (run_streaming) puts their bytes;
** NULL in the other runs. */
static pfp__buf *stream_sink;

/* The reader's job-end callback: logs what the reader handed over (a
** streamed result from the sink). */
static void reader_job_end(void *ud, pfp__frame_reader *r) {
  const void *result = r->result;
  static const char empty[1];
  if (r->result_streamed) {
    FUZZ_CHECK(r->result == NULL && stream_sink != NULL);
    FUZZ_CHECK(stream_sink->len == r->result_len);
    result = stream_sink->data ? stream_sink->data : empty;
  }
  const void *field[SLOTS] = {r->name, result, r->error, r->out, r->err};
  size_t len[SLOTS] = {r->name ? strlen(r->name) : 0, r->result_len,
                       r->error ? strlen(r->error) : 0, r->out_len,
                       r->err_len};
  log_job(ud, field, len);
  if (stream_sink != NULL)
    stream_sink->len = 0;
}

/* Decodes the whole stream at once, the simplest way the format allows. */
static void decode(const unsigned char *s, size_t n, int reuse,
                   expected *x) {
  size_t pos = 0;
  memset(x, 0, sizeof *x);
  while (pos < n) {
    /* The type byte is judged as soon as it arrives: garbage shorter than
    ** a header is garbage, not a cut-off frame. */
    int slot = slot_of(s[pos], reuse);
    if (slot < 0) {
      x->protocol_error = 1;
      return;
    }
    if (n - pos < PFP__FRAME_HEADER) {
      x->partial = 1;
      return;
    }
    uint64_t len = 0;
    for (int i = 0; i < 8; i++)
      len |= (uint64_t)s[pos + 1 + i] << (8 * i);
    if (len > PFP__FRAME_MAX) {
      x->protocol_error = 1;
      return;
    }
    pos += PFP__FRAME_HEADER;
    if (n - pos < len) {
      x->partial = 1;
      return;
    }
    if (slot == SLOT_JOB_END) {
      const void *field[SLOTS];
      for (int k = 0; k < SLOTS; k++)
        field[k] = x->slot[k];
      log_job(&x->jobs, field, x->slot_len);
      memset(x->slot, 0, sizeof x->slot);
      memset(x->slot_len, 0, sizeof x->slot_len);
      pos += (size_t)len;
      continue;
    }
    /* A second frame of a kind is refused only once it is complete, and
    ** so is a name after the result. */
    if (x->slot[slot] != NULL ||
        (slot == SLOT_NAME && x->slot[SLOT_RESULT] != NULL)) {
      x->protocol_error = 1;
      return;
    }
    x->slot[slot] = s + pos;
    x->slot_len[slot] = (size_t)len;
    pos += (size_t)len;
  }
}

/* ---- comparing a reader with the reference --------------------------- */

static void check_slot(const char *got, size_t got_len, const unsigned char *want,
                       size_t want_len) {
  if (want == NULL) {
    FUZZ_CHECK(got == NULL);
    return;
  }
  FUZZ_CHECK(got != NULL);
  FUZZ_CHECK(got_len == want_len);
  FUZZ_CHECK(memcmp(got, want, want_len) == 0);
  /* Delivered payloads are NUL-terminated for the callers that print them. */
  FUZZ_CHECK(got[want_len] == '\0');
}

static void check_reader(const pfp__frame_reader *r, const expected *x,
                         size_t fed, const pfp__buf *jobs) {
  /* The same jobs handed over, in the same order, with the same fields. */
  FUZZ_CHECK(jobs->len == x->jobs.len);
  FUZZ_CHECK(jobs->len == 0 || memcmp(jobs->data, x->jobs.data, jobs->len) == 0);
  check_slot(r->out, r->out_len, x->slot[SLOT_OUT], x->slot_len[SLOT_OUT]);
  check_slot(r->err, r->err_len, x->slot[SLOT_ERR], x->slot_len[SLOT_ERR]);
  /* The name and error slots keep no length; the reference gives it, and
  ** the terminating NUL is checked at exactly that offset. */
  check_slot(r->name, x->slot_len[SLOT_NAME], x->slot[SLOT_NAME],
             x->slot_len[SLOT_NAME]);
  check_slot(r->result, r->result_len, x->slot[SLOT_RESULT],
             x->slot_len[SLOT_RESULT]);
  check_slot(r->error, x->slot_len[SLOT_ERROR], x->slot[SLOT_ERROR],
             x->slot_len[SLOT_ERROR]);
  FUZZ_CHECK((r->protocol_error != NULL) == x->protocol_error);
  if (r->protocol_error != NULL) {
    FUZZ_CHECK(r->protocol_error[0] != '\0');
    /* Nothing is buffered once the reader has given up. */
    FUZZ_CHECK(r->payload.len == 0);
  }
  FUZZ_CHECK(pfp__frame_reader_partial(r) == x->partial);
  FUZZ_CHECK(r->header_len <= PFP__FRAME_HEADER);
  /* Never more payload held than bytes fed. */
  size_t held = r->payload.len;
  for (int k = 0; k < SLOTS; k++)
    held += x->slot_len[k];
  FUZZ_CHECK(held <= fed);
  if (r->in_payload && r->protocol_error == NULL)
    FUZZ_CHECK(r->payload.len < r->want);
}

/* ---- ways of feeding ------------------------------------------------- */

/* A small deterministic generator for chunk sizes, seeded by the input. */
static unsigned next_rand(unsigned *state) {
  *state = *state * 1103515245u + 12345u;
  return (*state >> 16) & 0x7fff;
}

/* The next read's size, at most `left`: mostly small, so that headers and
** payloads are cut anywhere, now and then a large one; empty reads
** included. */
static size_t chunk_size(unsigned *seed, size_t left) {
  unsigned v = next_rand(seed);
  size_t take = v % 4 == 0 ? v % 4096 : v % 13;
  return take < left ? take : left;
}

static void feed(pfp__frame_reader *r, const unsigned char *s, size_t n) {
  /* Out of memory is the only failure, and these inputs are small. */
  FUZZ_CHECK(pfp__frame_reader_feed(r, (const char *)s, n) == 0);
}

/* A fresh reader, for a reused worker's pipe when `reuse`, logging the
** jobs it hands over into *jobs. */
static void start_reader(pfp__frame_reader *r, int reuse, pfp__buf *jobs) {
  memset(r, 0, sizeof *r);
  memset(jobs, 0, sizeof *jobs);
  if (reuse) {
    r->on_job_end = reader_job_end;
    r->ud = jobs;
  }
}

static void stop_reader(pfp__frame_reader *r, pfp__buf *jobs) {
  pfp__frame_reader_free(r);
  pfp__buf_free(jobs);
}

static void run_whole(const unsigned char *s, size_t n, int reuse,
                      const expected *x) {
  pfp__frame_reader r;
  pfp__buf jobs;
  start_reader(&r, reuse, &jobs);
  feed(&r, s, n);
  check_reader(&r, x, n, &jobs);
  /* An empty read changes nothing. */
  feed(&r, NULL, 0);
  check_reader(&r, x, n, &jobs);
  stop_reader(&r, &jobs);
}

static void run_bytewise(const unsigned char *s, size_t n, int reuse,
                         const expected *x) {
  pfp__frame_reader r;
  pfp__buf jobs;
  start_reader(&r, reuse, &jobs);
  for (size_t i = 0; i < n; i++)
    feed(&r, s + i, 1);
  check_reader(&r, x, n, &jobs);
  stop_reader(&r, &jobs);
}

static void run_chunks(const unsigned char *s, size_t n, int reuse,
                       const expected *x, unsigned seed) {
  pfp__frame_reader r;
  pfp__buf jobs;
  start_reader(&r, reuse, &jobs);
  size_t pos = 0;
  while (pos < n) {
    size_t take = chunk_size(&seed, n - pos);
    feed(&r, take ? s + pos : NULL, take);
    pos += take;
  }
  check_reader(&r, x, n, &jobs);
  stop_reader(&r, &jobs);
}

static void run_split_everywhere(const unsigned char *s, size_t n, int reuse,
                                 const expected *x) {
  for (size_t k = 0; k <= n; k++) {
    pfp__frame_reader r;
    pfp__buf jobs;
    start_reader(&r, reuse, &jobs);
    feed(&r, s, k);
    feed(&r, s + k, n - k);
    check_reader(&r, x, n, &jobs);
    stop_reader(&r, &jobs);
  }
}

/* Feeds in chunks as run_chunks does, but as the host does for pfp-run's
** output: each result of at least `min` bytes that is seen arriving is
** taken over (pfp__frame_reader_stream) and its bytes moved by the caller.
** The same jobs, the same fields and the same result bytes must come out;
** only where a result's bytes are kept differs. */
static void run_streaming(const unsigned char *s, size_t n, int reuse,
                          const expected *x, unsigned seed, uint64_t min) {
  pfp__frame_reader r;
  pfp__buf jobs, sink = {0};
  start_reader(&r, reuse, &jobs);
  stream_sink = &sink;
  size_t pos = 0;
  while (pos < n) {
    size_t take = chunk_size(&seed, n - pos);
    if (pfp__frame_reader_stream_offer(&r, min, seed & 1)) {
      /* What has arrived goes out first, then the rest as it comes. */
      put(&sink, r.payload.data ? r.payload.data : "", r.payload.len);
      pfp__frame_reader_stream(&r, 7);
      FUZZ_CHECK(r.stream_fd == 7 && r.payload.len == 0);
    }
    if (r.streaming) {
      uint64_t left = r.want - r.streamed;
      if (take > left)
        take = (size_t)left;
      put(&sink, s + pos, take);
      pfp__frame_reader_stream_commit(&r, take);
    } else {
      feed(&r, take ? s + pos : NULL, take);
    }
    pos += take;
  }
  expected seen = *x;
  if (r.result_streamed) {
    /* The result is the sink's, not the reader's. */
    FUZZ_CHECK(r.result == NULL);
    FUZZ_CHECK(x->slot[SLOT_RESULT] != NULL);
    FUZZ_CHECK(sink.len == x->slot_len[SLOT_RESULT]);
    FUZZ_CHECK(r.result_len == sink.len);
    FUZZ_CHECK(sink.len == 0 ||
               memcmp(sink.data, x->slot[SLOT_RESULT], sink.len) == 0);
    seen.slot[SLOT_RESULT] = NULL;
  }
  check_reader(&r, &seen, n, &jobs);
  stream_sink = NULL;
  pfp__buf_free(&sink);
  stop_reader(&r, &jobs);
}

/* ---- frames built from a description --------------------------------- */

/* Lengths a broken or hostile child could announce. */
static const uint64_t odd_lengths[] = {
    PFP__FRAME_MAX,       PFP__FRAME_MAX + 1,   PFP__FRAME_MAX - 1,
    UINT64_MAX,           UINT64_MAX - 1,       (uint64_t)1 << 63,
    (uint64_t)SIZE_MAX,   (uint64_t)1 << 32,    ((uint64_t)1 << 32) - 1,
    (uint64_t)INT32_MAX,  (uint64_t)INT32_MAX + 1,
};

static void put(pfp__buf *b, const void *p, size_t n) {
  FUZZ_CHECK(pfp__buf_append(b, p, n) == 0);
}

static void put_header(pfp__buf *b, unsigned char type, uint64_t len) {
  unsigned char h[PFP__FRAME_HEADER];
  h[0] = type;
  for (int i = 0; i < 8; i++)
    h[1 + i] = (unsigned char)(len >> (8 * i));
  put(b, h, sizeof h);
}

/* Each frame is described by an op byte, then what the op needs:
**   bits 0-1: type N, R, E, or a garbage type byte taken from the input;
**   bit 6: R becomes T (a returned result);
**   bits 2-4: 0-3 exact length (next byte), 4 truncated (declares more than
**             it carries), 5 an odd length from the table (next byte picks),
**             6 empty payload, 7 raw 8-byte length from the input;
**   bit 7, on a reused worker's pipe: a job-end frame follows (outputs
**           come as garbage type bytes 'O' and 'D' from the input);
**   the payload bytes come from the input after that. */
static void build_frames(const unsigned char *d, size_t n, int reuse,
                         pfp__buf *out) {
  static const unsigned char types[] = {PFP__FRAME_NAME, PFP__FRAME_RESULT,
                                        PFP__FRAME_ERROR};
  size_t i = 0;
  while (i < n) {
    unsigned op = d[i++];
    unsigned char type = (op & 3) == 3 ? (i < n ? d[i++] : 0) : types[op & 3];
    if (type == PFP__FRAME_RESULT && (op & 0x40))
      type = PFP__FRAME_RETURNED;
    unsigned kind = (op >> 2) & 7;
    size_t have = n - i;
    size_t len = 0;
    uint64_t declared;
    switch (kind) {
    case 4: /* truncated: the child died mid-write */
      len = i < n ? d[i++] : 0;
      have = n - i;
      if (len > have)
        len = have;
      put_header(out, type, (uint64_t)len + 1 + (op >> 5));
      put(out, d + i, len);
      return; /* nothing can follow a partial frame */
    case 5:
      declared = odd_lengths[(i < n ? d[i++] : 0) %
                             (sizeof odd_lengths / sizeof odd_lengths[0])];
      have = n - i;
      len = have < 64 ? have : 64;
      put_header(out, type, declared);
      put(out, d + i, len);
      return;
    case 6:
      put_header(out, type, 0);
      break;
    case 7:
      declared = 0;
      for (int k = 0; k < 8; k++)
        declared |= (uint64_t)(i < n ? d[i++] : 0) << (8 * k);
      have = n - i;
      len = declared < have ? (size_t)declared : have;
      put_header(out, type, declared);
      put(out, d + i, len);
      i += len;
      break;
    default:
      len = i < n ? d[i++] : 0;
      have = n - i;
      if (len > have)
        len = have;
      put_header(out, type, len);
      put(out, d + i, len);
      i += len;
      break;
    }
    if (reuse && (op & 0x80))
      put_header(out, PFP__FRAME_JOB_END, 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3)
    return 0;
  unsigned mode = data[0];
  int reuse = (mode & 2) != 0;
  unsigned seed = (unsigned)data[1] | (unsigned)data[2] << 8;
  const unsigned char *body = data + 3;
  size_t n = size - 3;
  pfp__buf built = {0};
  if (mode & 1) {
    static const unsigned char none[1];
    build_frames(body, n, reuse, &built);
    /* An empty buffer has no data pointer, and NULL + 0 is undefined. */
    body = built.data ? (const unsigned char *)built.data : none;
    n = built.len;
  }
  expected x;
  decode(body, n, reuse, &x);
  run_whole(body, n, reuse, &x);
  run_bytewise(body, n, reuse, &x);
  run_chunks(body, n, reuse, &x, seed);
  run_streaming(body, n, reuse, &x, seed, 1 + seed % 16);
  if (n <= 300)
    run_split_everywhere(body, n, reuse, &x);
  pfp__buf_free(&x.jobs);
  pfp__buf_free(&built);
  return 0;
}
