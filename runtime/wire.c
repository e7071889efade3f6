/*
** wire.c — the frames a child writes on its result pipe.
**
** A frame is one type byte, the payload length as 8 bytes little-endian,
** then the payload.  The host knows a result is complete only when its
** whole frame has arrived: a child that dies mid-write leaves a partial
** frame, which is reported as a crash, never parsed as a broken result.
*/
#include <stdlib.h>
#include <string.h>

#include <sys/uio.h>

#include "pfp_internal.h"

/* Large payloads skip the host's read buffer: read() fills the payload
** itself, saving a copy of every byte of a big result. */
#define DIRECT_MIN ((uint64_t)64 << 10)
#define DIRECT_STEP ((size_t)16 << 20)

void pfp__frame_header(unsigned char header[PFP__FRAME_HEADER], int type,
                       uint64_t len) {
  header[0] = (unsigned char)type;
  for (int i = 0; i < 8; i++)
    header[1 + i] = (unsigned char)(len >> (8 * i));
}

int pfp__frame_write(int fd, int type, const void *payload, size_t len) {
  unsigned char header[PFP__FRAME_HEADER];
  pfp__frame_header(header, type, len);
  struct iovec iov[2] = {{header, PFP__FRAME_HEADER}, {(void *)payload, len}};
  return pfp__writev_all(fd, iov, len > 0 ? 2 : 1);
}

void pfp__frame_reader_free(pfp__frame_reader *r) {
  pfp__buf_free(&r->payload);
  free(r->name);
  free(r->result);
  free(r->error);
  free(r->out);
  free(r->err);
  free(r->protocol_error);
  memset(r, 0, sizeof *r);
}

void pfp__frame_reader_take_job(pfp__frame_reader *r) {
  free(r->name);
  free(r->result);
  free(r->error);
  free(r->out);
  free(r->err);
  r->name = r->result = r->error = r->out = r->err = NULL;
  r->result_len = r->out_len = r->err_len = 0;
  r->result_streamed = 0;
  r->stream_errno = 0;
}

static int protocol_error(pfp__frame_reader *r, char *msg) {
  r->protocol_error = msg;
  pfp__buf_free(&r->payload);
  return msg ? 0 : -1;
}

static int known_type(const pfp__frame_reader *r, int type) {
  if (type == PFP__FRAME_NAME || type == PFP__FRAME_RESULT ||
      type == PFP__FRAME_RETURNED || type == PFP__FRAME_ERROR)
    return 1;
  /* Output and job ends come only from reused workers. */
  return r->on_job_end != NULL &&
         (type == PFP__FRAME_STDOUT || type == PFP__FRAME_STDERR ||
          type == PFP__FRAME_JOB_END);
}

static int is_result(int type) {
  return type == PFP__FRAME_RESULT || type == PFP__FRAME_RETURNED;
}

/* Takes the completed payload into the slot its type names. */
static int frame_complete(pfp__frame_reader *r) {
  int type = r->header[0];
  size_t len;
  char *data = pfp__buf_steal(&r->payload, &len);
  if (data == NULL)
    return -1;
  r->in_payload = 0;
  r->header_len = 0;
  r->stream_decided = 0;
  if (type == PFP__FRAME_JOB_END) {
    free(data);
    r->on_job_end(r->ud, r);
    pfp__frame_reader_take_job(r);
    return 0;
  }
  char **slot = type == PFP__FRAME_NAME     ? &r->name
                : is_result(type)           ? &r->result
                : type == PFP__FRAME_STDOUT ? &r->out
                : type == PFP__FRAME_STDERR ? &r->err
                                            : &r->error;
  /* A child sends the name before the result.  A result streamed out as
  ** it arrived was recorded under the name known then, so none may follow
  ** it, and the rule holds for every result alike, whether it was streamed
  ** or not (which depends only on how the bytes happened to arrive). */
  if (type == PFP__FRAME_NAME && (r->result != NULL || r->result_streamed)) {
    free(data);
    return protocol_error(r, pfp__strdup("'N' frame after the result"));
  }
  if (*slot != NULL || (is_result(type) && r->result_streamed)) {
    free(data);
    return protocol_error(r, is_result(type)
                                 ? pfp__strdup("a second result")
                                 : pfp__strdupf("duplicate '%c' frame", type));
  }
  *slot = data;
  if (is_result(type))
    r->result_len = len;
  else if (type == PFP__FRAME_STDOUT)
    r->out_len = len;
  else if (type == PFP__FRAME_STDERR)
    r->err_len = len;
  return 0;
}

int pfp__frame_reader_feed(pfp__frame_reader *r, const char *data,
                           size_t len) {
  while (len > 0 && r->protocol_error == NULL) {
    if (!r->in_payload) {
      size_t take = PFP__FRAME_HEADER - r->header_len;
      if (take > len)
        take = len;
      memcpy(r->header + r->header_len, data, take);
      r->header_len += take;
      data += take;
      len -= take;
      /* The type is judged as soon as it arrives, so garbage shorter than
      ** a header is reported as garbage, not as a cut-off frame. */
      int type = r->header[0];
      if (!known_type(r, type))
        return protocol_error(
            r, pfp__strdupf("unknown frame type 0x%02x on the result pipe",
                            type));
      if (r->header_len < PFP__FRAME_HEADER)
        break;
      uint64_t want = 0;
      for (int i = 0; i < 8; i++)
        want |= (uint64_t)r->header[1 + i] << (8 * i);
      if (want > PFP__FRAME_MAX || want >= SIZE_MAX)
        return protocol_error(
            r, pfp__strdupf("frame of %llu bytes is larger than allowed",
                            (unsigned long long)want));
      r->want = want;
      r->in_payload = 1;
      /* A small payload gets its room now; a big one once it is seen to
      ** arrive (pfp__frame_reader_direct). */
      if (want > 0 && want <= DIRECT_MIN &&
          pfp__buf_reserve_exact(&r->payload, (size_t)want) != 0)
        return -1;
      if (want == 0 && frame_complete(r) != 0)
        return -1;
      continue;
    }
    size_t take = r->want - r->payload.len;
    if (take > len)
      take = len;
    /* Grow with the data that actually arrives, never by the declared
    ** length: a garbage header must not allocate terabytes. */
    if (pfp__buf_append(&r->payload, data, take) != 0)
      return -1;
    data += take;
    len -= take;
    if (r->payload.len == r->want && frame_complete(r) != 0)
      return -1;
  }
  return 0;
}

char *pfp__frame_reader_direct(pfp__frame_reader *r, size_t *room) {
  if (!r->in_payload || r->protocol_error != NULL ||
      r->payload.len < DIRECT_MIN)
    return NULL;
  uint64_t left = r->want - r->payload.len;
  if (left < DIRECT_MIN)
    return NULL;
  if (r->want <= PFP__FRAME_RESERVE_MAX) {
    /* The rest is coming: all of its room at once, filled front to back. */
    if (r->payload.cap <= r->want) {
      if (pfp__buf_reserve_exact(&r->payload, (size_t)left) != 0)
        return NULL; /* the ordinary path reports the lack of memory */
      pfp__advise_huge_pages(r->payload.data, r->payload.cap);
    }
  } else {
    size_t step = left < DIRECT_STEP ? (size_t)left : DIRECT_STEP;
    if (r->payload.cap - r->payload.len <= step &&
        pfp__buf_reserve(&r->payload, step) != 0)
      return NULL;
  }
  size_t free_bytes = r->payload.cap - r->payload.len - 1;
  *room = left < free_bytes ? (size_t)left : free_bytes;
  return r->payload.data + r->payload.len;
}

int pfp__frame_reader_commit(pfp__frame_reader *r, size_t n) {
  r->payload.len += n;
  r->payload.data[r->payload.len] = '\0';
  if (r->payload.len == r->want)
    return frame_complete(r);
  return 0;
}

int pfp__frame_reader_partial(const pfp__frame_reader *r) {
  return r->protocol_error == NULL && (r->header_len > 0 || r->in_payload);
}

uint64_t pfp__frame_reader_received(const pfp__frame_reader *r) {
  return r->streaming ? r->streamed : r->payload.len;
}

int pfp__frame_reader_stream_offer(pfp__frame_reader *r, uint64_t min,
                                   int returned_only) {
  int type = r->header[0];
  /* A second result is refused when complete, as always: it must not
  ** reach the stream behind the first. */
  if (!r->in_payload || r->streaming || r->stream_decided ||
      r->protocol_error != NULL || !is_result(type) ||
      (returned_only && type != PFP__FRAME_RETURNED) || r->want < min ||
      r->result != NULL || r->result_streamed)
    return 0;
  r->stream_decided = 1;
  return 1;
}

/* The streamed payload is complete: the frame ends as a result that is
** there but not kept.  (It is the job's only one: a stream is offered no
** second result.) */
static void stream_complete(pfp__frame_reader *r) {
  r->streaming = 0;
  r->in_payload = 0;
  r->header_len = 0;
  r->stream_decided = 0;
  r->result_streamed = 1;
  r->result_len = (size_t)r->want;
}

void pfp__frame_reader_stream(pfp__frame_reader *r, int fd) {
  r->streamed = r->payload.len;
  pfp__buf_free(&r->payload);
  r->streaming = 1;
  r->stream_fd = fd;
  r->stream_copy = 0;
  if (r->streamed == r->want)
    stream_complete(r);
}

void pfp__frame_reader_stream_commit(pfp__frame_reader *r, size_t n) {
  r->streamed += n;
  if (r->streamed == r->want)
    stream_complete(r);
}
