/*
** fuzz_inputs.c — what pfp-run reads from its user: FUNCTION=ARGS and
** --context (pfp__parse_object) and the lines of a --jobs-file
** (pfp__parse_job_line), and the scanner that checks a jobs file's lines
** without building them (pfp__scan_job_line).
**
** The scanner may leave any line to the parser, but a line it is sure of
** must be one the parser accepts, with the same function name; a line it
** calls blank, one the parser skips.
**
** Accepted input must be what the callers rely on (an object, within the
** depth limit, no NUL in a key; a non-empty function name without NUL).
** Refused input must get a message, and the message must not depend on the
** text of any string value: a context holds secrets, and pfp's messages end
** up in logs.  Two checks enforce that:
**   - the input is parsed a second time with every string value altered
**     (printable ASCII rotated, the last byte of each multi-byte UTF-8
**     character changed; escapes, lengths and validity kept); the message
**     must come out the same;
**   - no run of 8 bytes of a string value may appear in the message unless
**     the message for the altered input has it too (then it is pfp's own
**     wording, e.g. a value that happens to read "expected a JSON object").
** Object keys are not secret (a jobs line's unknown key is quoted on
** purpose), so they are left as they are.
*/
#include <string.h>

#include "fuzz.h"
#include "pfp_internal.h"

#define SECRET_RUN 8

/* A string literal of the input, as a lexer that knows only strings sees
** it: [start, end) is the raw text between the quotes. */
typedef struct literal {
  size_t start, end;
} literal;

/* Finds the string literals of s that are values, not keys, at most `max`.
** A literal is a key where jansson expects one: inside an object, right
** after its '{' or a ','.  On text that is not JSON this follows jansson
** only up to its first error, which is enough: past that point nothing of
** the input may appear in a message anyway. */
static size_t value_literals(const unsigned char *s, size_t n, literal *out,
                             size_t max) {
  char *open = malloc(n ? n : 1); /* the containers open at each point */
  size_t depth = 0, count = 0, i = 0;
  unsigned char last = 0; /* the last character outside strings */
  FUZZ_CHECK(open != NULL);
  while (i < n) {
    unsigned c = s[i];
    if (c != '"') {
      if (c == '{' || c == '[')
        open[depth++] = (char)c;
      else if ((c == '}' || c == ']') && depth > 0)
        depth--;
      if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
        last = (unsigned char)c;
      i++;
      continue;
    }
    size_t start = ++i;
    while (i < n && s[i] != '"')
      i += s[i] == '\\' ? 2 : 1;
    size_t end = i < n ? i : n;
    i = end + 1;
    int key = depth > 0 && open[depth - 1] == '{' && (last == '{' || last == ',');
    last = '"';
    if (!key && count < max)
      out[count++] = (literal){start, end};
  }
  free(open);
  return count;
}

/* Printable ASCII but '"' and '\\' all mean themselves inside a JSON
** string: rotating within that set changes the value and nothing else. */
static unsigned char rotate_printable(unsigned c) {
  static char set[96];
  static size_t n;
  if (n == 0) {
    for (unsigned k = 0x20; k < 0x7F; k++)
      if (k != '"' && k != '\\')
        set[n++] = (char)k;
  }
  const char *at = memchr(set, (int)c, n);
  if (at == NULL)
    return (unsigned char)c;
  return (unsigned char)set[((size_t)(at - set) + n / 2) % n];
}

/* Alters the text of a literal in place, keeping its length, its escapes
** and its validity as UTF-8, so that jansson's verdict cannot change. */
static void alter(unsigned char *s, const literal *lit) {
  size_t i = lit->start;
  while (i < lit->end) {
    unsigned c = s[i];
    if (c == '\\') {
      /* Escapes stay: "\u" is followed by hex digits that must stay hex. */
      i += (i + 1 < lit->end && s[i + 1] == 'u') ? 6 : 2;
    } else if (c >= 0x20 && c < 0x7F) {
      s[i++] = rotate_printable(c);
    } else if (c >= 0x80) {
      /* The runtime's own rules (as jansson's: no overlongs, surrogates
      ** or code points above U+10FFFF). */
      size_t len = pfp__utf8_sequence(s + i, lit->end - i);
      if (len == 0) {
        i++; /* invalid bytes are left, so the error stays the same */
        continue;
      }
      /* Flipping the low bit of the last continuation byte keeps it in
      ** the range every lead byte allows. */
      s[i + len - 1] ^= 1;
      i += len;
    } else {
      i++;
    }
  }
}

/* Does msg contain any SECRET_RUN bytes of the literal that `other` (the
** message for the altered input) does not? */
static int leaks(const char *msg, const char *other, const unsigned char *s,
                 const literal *lit) {
  if (lit->end - lit->start < SECRET_RUN)
    return 0;
  for (size_t i = lit->start; i + SECRET_RUN <= lit->end; i++) {
    const char *at = memmem(msg, strlen(msg), s + i, SECRET_RUN);
    if (at != NULL && memmem(other, strlen(other), s + i, SECRET_RUN) == NULL)
      return 1;
  }
  return 0;
}

/* ---- the parsers ----------------------------------------------------- */

/* Runs one parser on text; returns its message (new string) or NULL when
** it accepted the text, having checked what it gave back. */
typedef char *(*parser)(const char *text, size_t len, size_t line_no);

static char *parse_argument(const char *text, size_t len, size_t line_no) {
  char *msg = NULL;
  (void)line_no;
  int scan = pfp__scan_object(text, len);
  json_t *v = pfp__parse_object(text, len, "argument 1 (f)", &msg);
  FUZZ_CHECK(scan == PFP__SCAN_UNSURE || (scan == PFP__SCAN_SURE && v != NULL));
  if (v == NULL) {
    FUZZ_CHECK(msg != NULL);
    return msg;
  }
  FUZZ_CHECK(msg == NULL);
  FUZZ_CHECK(json_is_object(v));
  FUZZ_CHECK(pfp__json_depth_ok(v));
  FUZZ_CHECK(!pfp__json_keys_have_nul(v));
  json_decref(v);
  return NULL;
}

static char *parse_job(const char *text, size_t len, size_t line_no) {
  char *name = NULL, *msg = NULL;
  json_t *args = NULL;
  pfp__job_span job;
  int scan = pfp__scan_job_line(text, len, &job);
  int rc = pfp__parse_job_line(text, len, "jobs.jsonl", line_no, &name, &args,
                               &msg);
  if (scan == PFP__SCAN_SURE) {
    FUZZ_CHECK(rc == 0 && strlen(name) == job.name_len &&
               memcmp(name, text + job.name_at, job.name_len) == 0);
    /* The args span is the args object, and the same one. */
    FUZZ_CHECK((job.args_len == 0) == (args == NULL));
    if (args != NULL) {
      FUZZ_CHECK(pfp__scan_object(text + job.args_at, job.args_len) ==
                 PFP__SCAN_SURE);
      json_t *again = json_loadb(text + job.args_at, job.args_len,
                                 JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
      FUZZ_CHECK(again != NULL && json_equal(again, args));
      json_decref(again);
    }
  } else if (scan == PFP__SCAN_BLANK)
    FUZZ_CHECK(rc == 1);
  else
    FUZZ_CHECK(scan == PFP__SCAN_UNSURE);
  if (rc == -1) {
    FUZZ_CHECK(msg != NULL && name == NULL && args == NULL);
    /* Every message names the place. */
    FUZZ_CHECK(strncmp(msg, "jobs.jsonl:", 11) == 0);
    return msg;
  }
  FUZZ_CHECK(msg == NULL);
  if (rc == 1) {
    FUZZ_CHECK(name == NULL && args == NULL);
    for (size_t i = 0; i < len; i++)
      FUZZ_CHECK(strchr(" \t\r\n", text[i]) != NULL && text[i] != '\0');
    return NULL;
  }
  FUZZ_CHECK(rc == 0 && name != NULL && name[0] != '\0');
  FUZZ_CHECK(args == NULL || (json_is_object(args) && pfp__json_depth_ok(args) &&
                              !pfp__json_keys_have_nul(args)));
  free(name);
  json_decref(args);
  return NULL;
}

/* Parses text and its altered copy and compares the messages. */
static void check(parser parse, const char *text, size_t len, size_t line_no) {
  enum { MAX_LITERALS = 256 };
  literal lits[MAX_LITERALS];
  char *msg = parse(text, len, line_no);
  if (msg == NULL)
    return;
  FUZZ_CHECK(msg[0] != '\0');

  unsigned char *altered = malloc(len ? len : 1);
  FUZZ_CHECK(altered != NULL);
  memcpy(altered, text, len);
  size_t count = value_literals(altered, len, lits, MAX_LITERALS);
  for (size_t i = 0; i < count; i++)
    alter(altered, &lits[i]);
  char *other = parse((const char *)altered, len, line_no);
  if (other == NULL || strcmp(msg, other) != 0)
    fprintf(stderr, "message depends on string values:\n  %s\n  %s\n", msg,
            other ? other : "(accepted)");
  FUZZ_CHECK(other != NULL && strcmp(msg, other) == 0);
  for (size_t i = 0; i < count; i++)
    FUZZ_CHECK(!leaks(msg, other, (const unsigned char *)text, &lits[i]));
  free(other);
  free(altered);
  free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  check(parse_argument, text, size, 0);
  check(parse_job, text, size, 1);
  /* As a jobs file: line by line, each with its '\n' as getline gives it
  ** to pfp-run. */
  size_t line_no = 1, start = 0;
  for (size_t i = 0; i <= size; i++) {
    if (i == size || text[i] == '\n') {
      if (i > start || i < size)
        check(parse_job, text + start, i - start + (i < size), line_no);
      line_no++;
      start = i + 1;
    }
  }
  return 0;
}
