/*
** processor.c — the public processor handle: scripts, context,
** registrations, options and records.  This file decides what runs; exec.c
** decides how.
*/

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "pfp_internal.h"

/* Registry key of the list of tables returned by loaded scripts. */
#define EXPORTS_KEY "pfp.exports"

typedef struct registration {
  char *name;
  int fn_ref;   /* LUA_NOREF: look the function up by name */
  int args_ref; /* LUA_NOREF: build args from args_json or args_text */
  json_t *args_json;
  /* pfp_register's text, or a text feed's, checked and kept as text: a
  ** parsed object costs ten times its size while it waits for its run.
  ** Decoded when it runs (see take_next). */
  char *args_text;
  unsigned char name_shared; /* name belongs to the registration before */
} registration;

struct pfp_processor {
  lua_State *L;
  int owns_state;
  int code;
  char *msg;
  int wake[2]; /* pfp_interrupt writes a byte; exec polls the read end */
  volatile sig_atomic_t interrupt_flag; /* set with each byte written */
  int context_ref;

  registration *regs;
  size_t nregs, capregs;

  unsigned jobs;
  double timeout;
  double kill_grace;
  size_t output_limit;
  size_t memory_limit;
  unsigned reuse;
  pfp_record_fn on_record;
  void *on_record_ud;
  pfp_idle_fn on_idle;
  void *on_idle_ud;
  pfp__stream_fn stream; /* pfp__set_result_stream */
  void *stream_ud;
  int stream_returned_only;
  int keep_records;
  pfp_feed_fn feed;
  pfp_feed_text_fn feed_text; /* at most one of the two is set */
  void *feed_ud;
  /* The last name pfp__check_function found to be a function: calls are
  ** usually registered (or fed) for one function again and again, and
  ** looking it up costs a protected call.  Forgotten at each run and each
  ** load; never kept for a Lua state the processor does not own, whose
  ** globals its host can change at any time. */
  char *checked_name;
  /* The function of the first name a job pushed, kept (registry
  ** reference) so that later jobs of that name push it with no Lua call
  ** (other names take the protected path).  In a state the processor
  ** owns, such a job with args as text costs the host no protected call,
  ** no allocation and no write to Lua's global state (whose pages every
  ** fork shares with the host: a fault each).  Forgotten with
  ** checked_name, under the same rules. */
  char *pushed_name;
  int pushed_ref;
  int feed_fd;
  char *feed_msg;
  int push_code; /* the error push_job_protected raised, 0 for none */

  pfp_record **records; /* indexed by registration index while running */
  size_t nrecords, caprecords;

  /* The fork server that runs this processor's work, or NULL when this
  ** process forks the children itself (pfp_start_fork_server). */
  pfp__server *server;

  int executing;
  size_t not_ok;     /* records of the current run whose status is not ok */
  size_t next_reg;   /* next registration to hand to exec */
  size_t next_index; /* index of the next job */
};

static const char create_failed[] =
    "pfp_processor_create: out of memory or no Lua state";

/* ---- codes and messages ---------------------------------------------- */

const char *pfp_strerror(int code) {
  switch (code) {
#define PFP__CODE_TEXT(name, value, text)                                    \
  case PFP_##name:                                                           \
    return text;
    PFP_ERROR_MAP(PFP__CODE_TEXT)
#undef PFP__CODE_TEXT
  }
  return "unknown error";
}

const char *pfp_status_name(pfp_status status) {
  switch (status) {
#define PFP__STATUS_TEXT(name, value, text)                                  \
  case PFP_STATUS_##name:                                                    \
    return text;
    PFP_STATUS_MAP(PFP__STATUS_TEXT)
#undef PFP__STATUS_TEXT
  }
  return NULL;
}

const char *pfp_version(void) { return PFP_VERSION; }

/* Sets the processor's error; takes ownership of msg (NULL: the code's
** description).  Returns code. */
static int set_error(pfp_processor *p, int code, char *msg) {
  free(p->msg);
  p->code = code;
  p->msg = msg ? msg : pfp__strdup(pfp_strerror(code));
  return code;
}

static int errorf(pfp_processor *p, int code, const char *fmt, ...)
    PFP__PRINTF(3, 4);
static int errorf(pfp_processor *p, int code, const char *fmt, ...) {
  pfp__buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  char text[1024];
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  pfp__buf_puts(&b, text);
  return set_error(p, code, b.data);
}

static int ok(pfp_processor *p) {
  free(p->msg);
  p->msg = NULL;
  p->code = PFP_OK;
  return PFP_OK;
}

/* The outcome of a request answered by the fork server; takes msg. */
static int remote_result(pfp_processor *p, int rc, char *msg) {
  if (rc == PFP_OK) {
    free(msg);
    return ok(p);
  }
  return set_error(p, rc, msg);
}

const char *pfp_errmsg(const pfp_processor *p) {
  if (p == NULL)
    return create_failed;
  return p->msg ? p->msg : "";
}

int pfp_errcode(const pfp_processor *p) { return p ? p->code : PFP_ENOMEM; }

/* ---- protected Lua calls --------------------------------------------- */

/* Runs f(p, ...) under lua_pcall so that a Lua error (out of memory, a
** script's error) becomes a return code instead of a panic.  The nargs
** arguments already pushed follow p; nresults are left on the stack on
** success. */
static int pcall_with(pfp_processor *p, lua_CFunction f, int nargs,
                      int nresults, int code, const char *what) {
  lua_State *L = p->L;
  if (!lua_checkstack(L, 4))
    return set_error(p, PFP_ENOMEM, NULL);
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, p);
  lua_rotate(L, -2 - nargs, 2);
  int status = lua_pcall(L, nargs + 1, nresults, 0);
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    int rc = errorf(p, status == LUA_ERRMEM ? PFP_ENOMEM : code, "%s%s", what,
                    msg ? msg : "(error object)");
    lua_pop(L, 1);
    return rc;
  }
  return PFP_OK;
}

/* ---- creating and destroying ----------------------------------------- */

static int open_wake_pipe(pfp_processor *p) {
  if (pfp__pipe(p->wake) != 0)
    return -1;
  /* A signal handler calling pfp_interrupt must never block. */
  return pfp__set_nonblock(p->wake[1]);
}

static pfp_processor *processor_new(lua_State *L, int owns) {
  pfp_processor *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  p->L = L;
  p->owns_state = owns;
  p->wake[0] = p->wake[1] = -1;
  p->context_ref = LUA_NOREF;
  p->pushed_ref = LUA_NOREF;
  p->feed_fd = -1;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  p->jobs = cpus > 0 ? (unsigned)cpus : 1;
  p->kill_grace = 1.0;
  p->output_limit = 1 << 20;
  p->keep_records = 1;
  if (open_wake_pipe(p) != 0) {
    pfp__close(&p->wake[0]);
    pfp__close(&p->wake[1]);
    free(p);
    return NULL;
  }
  return p;
}

static int open_state(lua_State *L) {
  luaL_openlibs(L);
  pfp__setup_state(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_pfp);
  lua_setfield(L, -2, "pfp");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, EXPORTS_KEY);
  return 0;
}

pfp_processor *pfp_processor_create(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return NULL;
  lua_pushcfunction(L, open_state);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  pfp_processor *p = processor_new(L, 1);
  if (p == NULL)
    lua_close(L);
  return p;
}

pfp_processor *pfp__processor_attach(lua_State *L) {
  return processor_new(L, 0);
}

static void free_records(pfp_processor *p) {
  for (size_t i = 0; i < p->nrecords; i++)
    pfp__record_free(p->records[i]);
  free(p->records);
  p->records = NULL;
  p->nrecords = p->caprecords = 0;
}

void pfp_clear(pfp_processor *p) {
  if (p == NULL || p->executing)
    return;
  for (size_t i = 0; i < p->nregs; i++) {
    registration *r = &p->regs[i];
    if (!r->name_shared)
      free(r->name);
    luaL_unref(p->L, LUA_REGISTRYINDEX, r->fn_ref);
    luaL_unref(p->L, LUA_REGISTRYINDEX, r->args_ref);
    json_decref(r->args_json);
    free(r->args_text);
  }
  free(p->regs);
  p->regs = NULL;
  p->nregs = p->capregs = 0;
  free_records(p);
}

void pfp_processor_destroy(pfp_processor *p) {
  if (p == NULL)
    return;
  pfp__server_stop(p->server);
  pfp_clear(p);
  luaL_unref(p->L, LUA_REGISTRYINDEX, p->context_ref);
  if (p->owns_state)
    lua_close(p->L);
  pfp__close(&p->wake[0]);
  pfp__close(&p->wake[1]);
  free(p->msg);
  free(p->feed_msg);
  free(p->checked_name);
  free(p->pushed_name);
  free(p);
}

/* ---- scripts ---------------------------------------------------------- */

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Runs the chunk on top of the stack once; a table it returns joins the
** exports, where functions are looked up by name. */
/* Appends the table argument to the exports list (it may grow: memory). */
static int add_exports_protected(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, EXPORTS_KEY);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* A load can define or remove functions: names are looked up afresh. */
static void forget_checked_name(pfp_processor *p) {
  free(p->checked_name);
  p->checked_name = NULL;
  free(p->pushed_name);
  p->pushed_name = NULL;
  luaL_unref(p->L, LUA_REGISTRYINDEX, p->pushed_ref);
  p->pushed_ref = LUA_NOREF;
}

static int run_chunk(pfp_processor *p) {
  lua_State *L = p->L;
  forget_checked_name(p);
  lua_pushcfunction(L, traceback);
  lua_insert(L, -2);
  if (lua_pcall(L, 0, 1, -2) != LUA_OK) {
    int rc = errorf(p, PFP_ESCRIPT, "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return rc;
  }
  lua_remove(L, -2); /* the traceback handler */
  if (lua_type(L, -1) == LUA_TTABLE)
    return pcall_with(p, add_exports_protected, 1, 0, PFP_ENOMEM, "") == PFP_OK
               ? ok(p)
               : p->code;
  lua_pop(L, 1);
  return ok(p);
}

int pfp_load_file(pfp_processor *p, const char *path) {
  if (p->executing)
    return set_error(p, PFP_EBUSY, NULL);
  if (path == NULL)
    return errorf(p, PFP_EINVAL, "pfp_load_file: path is NULL");
  if (p->server != NULL) {
    char *msg = NULL;
    forget_checked_name(p);
    int rc = pfp__server_load_file(p->server, path, &msg);
    return remote_result(p, rc, msg);
  }
  /* luaL_loadfile opens a directory without complaint on Linux and then
  ** reports a read error; say what is wrong instead. */
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errorf(p, PFP_ESCRIPT, "cannot open %s: %s", path,
                  strerror(errno));
  char probe;
  ssize_t n = pfp__read_some(fd, &probe, 1);
  int read_errno = errno;
  close(fd);
  if (n < 0)
    return errorf(p, PFP_ESCRIPT, "cannot read %s: %s", path,
                  strerror(read_errno));
  if (!lua_checkstack(p->L, 4))
    return set_error(p, PFP_ENOMEM, NULL);
  if (luaL_loadfile(p->L, path) != LUA_OK) {
    int rc = errorf(p, PFP_ESCRIPT, "%s", lua_tostring(p->L, -1));
    lua_pop(p->L, 1);
    return rc;
  }
  return run_chunk(p);
}

int pfp_load_string(pfp_processor *p, const char *chunkname,
                    const char *source) {
  if (p->executing)
    return set_error(p, PFP_EBUSY, NULL);
  if (source == NULL)
    return errorf(p, PFP_EINVAL, "pfp_load_string: source is NULL");
  if (p->server != NULL) {
    char *msg = NULL;
    forget_checked_name(p);
    int rc = pfp__server_load_string(p->server,
                                     chunkname ? chunkname : "=string",
                                     source, &msg);
    return remote_result(p, rc, msg);
  }
  if (!lua_checkstack(p->L, 4))
    return set_error(p, PFP_ENOMEM, NULL);
  if (luaL_loadbuffer(p->L, source, strlen(source),
                      chunkname ? chunkname : "=string") != LUA_OK) {
    int rc = errorf(p, PFP_ESCRIPT, "%s", lua_tostring(p->L, -1));
    lua_pop(p->L, 1);
    return rc;
  }
  return run_chunk(p);
}

/* ---- looking functions up -------------------------------------------- */

/* Pushes the function called `name` (exports newest first, then globals)
** or nil.  Raises only on memory errors. */
static void push_function(lua_State *L, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, EXPORTS_KEY);
  if (lua_type(L, -1) == LUA_TTABLE) {
    for (lua_Integer i = (lua_Integer)lua_rawlen(L, -1); i >= 1; i--) {
      lua_rawgeti(L, -1, i);
      lua_pushstring(L, name);
      lua_rawget(L, -2);
      if (lua_type(L, -1) == LUA_TFUNCTION) {
        lua_rotate(L, -3, 1);
        lua_pop(L, 2);
        return;
      }
      lua_pop(L, 2);
    }
  }
  lua_pop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushstring(L, name);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_type(L, -1) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
}

static int lookup_protected(lua_State *L) {
  push_function(L, lua_tostring(L, 2));
  return 1;
}

/* Checks that `name` names a loaded function; sets the error if not. */
int pfp__check_function(pfp_processor *p, const char *name) {
  if (name == NULL || name[0] == '\0')
    return errorf(p, PFP_EINVAL, "function name is empty");
  if (p->checked_name != NULL && strcmp(name, p->checked_name) == 0)
    return PFP_OK;
  int found;
  if (p->server != NULL) {
    /* The names the server sent after the last load: no round trip per
    ** registration. */
    found = pfp__server_has_function(p->server, name);
  } else {
    PFP__STACK_MARK(p->L);
    lua_pushstring(p->L, name);
    int rc = pcall_with(p, lookup_protected, 1, 1, PFP_ENOMEM, "");
    if (rc != PFP_OK)
      return rc;
    found = lua_type(p->L, -1) == LUA_TFUNCTION;
    lua_pop(p->L, 1);
    PFP__STACK_CHECK(p->L, 0);
  }
  if (!found)
    return errorf(p, PFP_ENOFUNC,
                  "unknown function '%s': no loaded script defines it (as a "
                  "global or in the table it returns)",
                  name);
  if (p->owns_state) {
    free(p->checked_name);
    p->checked_name = pfp__strdup(name); /* NULL: looked up again */
  }
  return PFP_OK;
}

/* ---- context and registrations --------------------------------------- */

static int push_json_protected(lua_State *L) {
  if (pfp__push_json(L, lua_touserdata(L, 2)) != 0)
    return luaL_error(L, "value nested deeper than %d levels", PFP_MAX_DEPTH);
  return 1;
}

/* Builds the table for a JSON value and keeps it in the registry; returns
** the reference. */
static int ref_json_protected(lua_State *L) {
  push_json_protected(L);
  lua_pushinteger(L, luaL_ref(L, LUA_REGISTRYINDEX));
  return 1;
}

int pfp_set_context(pfp_processor *p, json_t *context) {
  if (p->executing)
    return set_error(p, PFP_EBUSY, NULL);
  if (context != NULL && !json_is_object(context))
    return errorf(p, PFP_EJSON, "context: expected a JSON object");
  if (context != NULL && !pfp__json_depth_ok(context))
    return errorf(p, PFP_EJSON, "context: nested deeper than %d levels",
                  PFP_MAX_DEPTH);
  if (p->server != NULL) {
    char *msg = NULL;
    int rc = pfp__server_set_context(p->server, context, &msg);
    return remote_result(p, rc, msg);
  }
  if (context == NULL) {
    luaL_unref(p->L, LUA_REGISTRYINDEX, p->context_ref);
    p->context_ref = LUA_NOREF;
    return ok(p);
  }
  /* Built into a Lua table once, here in the host: every child inherits
  ** it through fork. */
  lua_pushlightuserdata(p->L, context);
  int rc = pcall_with(p, ref_json_protected, 1, 1, PFP_ENOMEM, "context: ");
  if (rc != PFP_OK)
    return rc;
  luaL_unref(p->L, LUA_REGISTRYINDEX, p->context_ref);
  p->context_ref = (int)lua_tointeger(p->L, -1);
  lua_pop(p->L, 1);
  return ok(p);
}

int pfp_set_context_json_named(pfp_processor *p, const char *json_text,
                               const char *source_name) {
  char *msg = NULL;
  if (json_text == NULL)
    return errorf(p, PFP_EINVAL, "context JSON text is NULL");
  json_t *v = pfp__parse_object(json_text, strlen(json_text),
                                source_name ? source_name : "context", &msg);
  if (v == NULL)
    return set_error(p, PFP_EJSON, msg);
  int rc = pfp_set_context(p, v);
  json_decref(v);
  return rc;
}

int pfp_set_context_json(pfp_processor *p, const char *json_text) {
  return pfp_set_context_json_named(p, json_text, NULL);
}

/* Lua values live in this process's state: a fork server cannot get them. */
static int no_lua_values(pfp_processor *p, const char *what) {
  return errorf(p, PFP_EINVAL,
                "%s: this processor has a fork server, which takes functions "
                "by name and args and context as JSON only (pfp_register, "
                "pfp_set_context): Lua values cannot be sent to it",
                what);
}

int pfp__set_context_value(pfp_processor *p, int idx) {
  if (p->server != NULL)
    return no_lua_values(p, "context");
  lua_pushvalue(p->L, idx);
  luaL_unref(p->L, LUA_REGISTRYINDEX, p->context_ref);
  p->context_ref = luaL_ref(p->L, LUA_REGISTRYINDEX);
  return ok(p);
}

static registration *new_registration(pfp_processor *p, const char *name) {
  if (p->nregs == p->capregs) {
    size_t cap = p->capregs ? p->capregs * 2 : 16;
    registration *regs = realloc(p->regs, cap * sizeof *regs);
    if (regs == NULL)
      return NULL;
    p->regs = regs;
    p->capregs = cap;
  }
  /* Calls of one function are usually registered in a row: they share
  ** its name. */
  registration *prev = p->nregs > 0 ? &p->regs[p->nregs - 1] : NULL;
  int shared = prev != NULL && strcmp(prev->name, name) == 0;
  char *copy = shared ? prev->name : pfp__strdup(name);
  if (copy == NULL)
    return NULL;
  registration *r = &p->regs[p->nregs++];
  memset(r, 0, sizeof *r);
  r->name = copy;
  r->name_shared = shared;
  r->fn_ref = LUA_NOREF;
  r->args_ref = LUA_NOREF;
  return r;
}

/* Checks what pfp_register_json checks before anything is kept. */
static int check_registration(pfp_processor *p, const char *name,
                              const json_t *args) {
  if (p->executing)
    return set_error(p, PFP_EBUSY, NULL);
  if (args != NULL && !json_is_object(args))
    return errorf(p, PFP_EJSON, "args of '%s': expected a JSON object",
                  name ? name : "");
  if (args != NULL && !pfp__json_depth_ok(args))
    return errorf(p, PFP_EJSON, "args of '%s': nested deeper than %d levels",
                  name ? name : "", PFP_MAX_DEPTH);
  return pfp__check_function(p, name);
}

int pfp_register_json(pfp_processor *p, const char *name, json_t *args) {
  int rc = check_registration(p, name, args);
  if (rc != PFP_OK)
    return rc;
  registration *r = new_registration(p, name);
  if (r == NULL)
    return set_error(p, PFP_ENOMEM, NULL);
  r->args_json = args ? json_incref(args) : NULL;
  return ok(p);
}

int pfp_register(pfp_processor *p, const char *name, const char *args_json) {
  if (args_json == NULL)
    return pfp_register_json(p, name, NULL);
  size_t len = strlen(args_json);
  int sure = pfp__scan_object(args_json, len) == PFP__SCAN_SURE;
  int rc;
  if (sure) {
    rc = check_registration(p, name, NULL);
  } else {
    /* What the scanner leaves open, jansson settles (and words). */
    char *msg = NULL;
    char *what = pfp__strdupf("args of '%s'", name ? name : "");
    if (what == NULL)
      return set_error(p, PFP_ENOMEM, NULL);
    json_t *v = pfp__parse_object(args_json, len, what, &msg);
    free(what);
    if (v == NULL)
      return set_error(p, PFP_EJSON, msg);
    rc = check_registration(p, name, v);
    json_decref(v);
  }
  if (rc != PFP_OK)
    return rc;
  char *text = pfp__strdup(args_json);
  registration *r = text ? new_registration(p, name) : NULL;
  if (r == NULL) {
    free(text);
    return set_error(p, PFP_ENOMEM, NULL);
  }
  r->args_text = text;
  return ok(p);
}

int pfp__register_value(pfp_processor *p, int fn, int args, const char *name) {
  if (p->server != NULL)
    return no_lua_values(p, "register");
  fn = lua_absindex(p->L, fn);
  args = lua_absindex(p->L, args);
  registration *r = new_registration(p, name);
  if (r == NULL)
    return set_error(p, PFP_ENOMEM, NULL);
  lua_pushvalue(p->L, fn);
  r->fn_ref = luaL_ref(p->L, LUA_REGISTRYINDEX);
  lua_pushvalue(p->L, args);
  r->args_ref = luaL_ref(p->L, LUA_REGISTRYINDEX);
  return ok(p);
}

size_t pfp_registration_count(const pfp_processor *p) { return p->nregs; }

/* ---- options ----------------------------------------------------------- */

int pfp_set_jobs(pfp_processor *p, unsigned jobs) {
  if (jobs < 1)
    return errorf(p, PFP_EINVAL, "jobs must be at least 1");
  p->jobs = jobs;
  return ok(p);
}

int pfp_set_timeout(pfp_processor *p, double seconds) {
  if (!(seconds >= 0) || isinf(seconds))
    return errorf(p, PFP_EINVAL,
                  "timeout must be a finite number of seconds >= 0");
  p->timeout = seconds;
  return ok(p);
}

int pfp_set_kill_grace(pfp_processor *p, double seconds) {
  if (!(seconds >= 0) || isinf(seconds))
    return errorf(p, PFP_EINVAL,
                  "kill grace must be a finite number of seconds >= 0");
  p->kill_grace = seconds;
  return ok(p);
}

int pfp_set_output_limit(pfp_processor *p, size_t bytes) {
  p->output_limit = bytes;
  return ok(p);
}

int pfp_set_memory_limit(pfp_processor *p, size_t bytes) {
  p->memory_limit = bytes;
  return ok(p);
}

int pfp_set_reuse(pfp_processor *p, unsigned max_calls_per_worker) {
  if (p->executing)
    return set_error(p, PFP_EBUSY, NULL);
  p->reuse = max_calls_per_worker;
  return ok(p);
}

int pfp_set_on_record(pfp_processor *p, pfp_record_fn fn, void *userdata) {
  p->on_record = fn;
  p->on_record_ud = userdata;
  return ok(p);
}

void pfp__set_result_stream(pfp_processor *p, pfp__stream_fn fn, void *ud,
                            int returned_only) {
  p->stream = fn;
  p->stream_ud = ud;
  p->stream_returned_only = returned_only;
}

int pfp_set_on_idle(pfp_processor *p, pfp_idle_fn fn, void *userdata) {
  p->on_idle = fn;
  p->on_idle_ud = userdata;
  return ok(p);
}

int pfp_set_keep_records(pfp_processor *p, int keep) {
  p->keep_records = keep != 0;
  return ok(p);
}

int pfp_set_feed(pfp_processor *p, pfp_feed_fn fn, void *userdata) {
  p->feed = fn;
  p->feed_text = NULL;
  p->feed_ud = userdata;
  return ok(p);
}

int pfp_set_feed_text(pfp_processor *p, pfp_feed_text_fn fn, void *userdata) {
  p->feed_text = fn;
  p->feed = NULL;
  p->feed_ud = userdata;
  return ok(p);
}

static int has_feed(const pfp_processor *p) {
  return p->feed != NULL || p->feed_text != NULL;
}

int pfp_set_feed_fd(pfp_processor *p, int fd) {
  p->feed_fd = fd < 0 ? -1 : fd;
  return ok(p);
}

void pfp_feed_error(pfp_processor *p, const char *message) {
  free(p->feed_msg);
  p->feed_msg = pfp__strdup(message ? message : "job feed failed");
}

/* ---- running ----------------------------------------------------------- */

/* Raises msg from push_job_protected, leaving the code it stands for where
** exec_next finds it: pcall_with would report any error but memory as
** the interrupt its caller expects. */
static int push_failed(lua_State *L, int code, const char *msg) {
  pfp_processor *p = lua_touserdata(L, 1);
  p->push_code = code;
  lua_pushstring(L, msg);
  return lua_error(L);
}

/* Pushes the function and args of registration (or fed job) r; args given
** as text are pushed as nil, exec_next having put the text beside. */
static int push_job_protected(lua_State *L) {
  pfp_processor *p = lua_touserdata(L, 1);
  registration *r = lua_touserdata(L, 2);
  if (r->fn_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
  else {
    push_function(L, r->name);
    if (p->owns_state && p->pushed_name == NULL &&
        (p->pushed_name = pfp__strdup(r->name)) != NULL) {
      lua_pushvalue(L, -1);
      p->pushed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
  }
  if (r->args_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->args_ref);
  else if (r->args_text != NULL)
    lua_pushnil(L); /* the text goes beside: the child decodes it */
  else if (r->args_json != NULL) {
    if (pfp__push_json(L, r->args_json) != 0)
      return push_failed(L, PFP_EJSON, "args nested deeper than "
                         PFP__STR(PFP_MAX_DEPTH) " levels");
  } else
    lua_newtable(L);
  return 2;
}

/* Replaces *r by *fed, a copy whose text args are decoded. */
static int decode_args_text(pfp_processor *p, registration *fed,
                            registration **r) {
  if (*r != fed)
    *fed = **r;
  char *msg = NULL;
  /* Checked text: only memory can fail. */
  fed->args_json = pfp__parse_object(fed->args_text, strlen(fed->args_text),
                                     "args", &msg);
  free(msg);
  fed->args_text = NULL;
  *r = fed;
  return fed->args_json != NULL ? 1 : set_error(p, PFP_ENOMEM, NULL);
}

/* Takes the next job: a registration, or one from the feed (then *fed is
** filled: its name and any args text borrowed from the feed until its next
** call, any args_json a new reference the caller releases).  With
** json_only (a fork server's children take JSON values) text args are
** decoded here.  Returns 1 with *r set, 0 when there are no more jobs,
** PFP_FEED_WAIT, or a negative code with the processor's message set. */
static int take_next(pfp_processor *p, registration *fed, registration **r,
                     int json_only) {
  if (p->next_reg < p->nregs) {
    *r = &p->regs[p->next_reg++];
    if ((*r)->args_text != NULL && json_only)
      return decode_args_text(p, fed, r);
    return 1;
  }
  if (!has_feed(p))
    return 0;
  const char *fed_name = NULL, *text = NULL;
  json_t *args = NULL;
  free(p->feed_msg);
  p->feed_msg = NULL;
  int rc = p->feed ? p->feed(p->feed_ud, &fed_name, &args)
                   : p->feed_text(p->feed_ud, &fed_name, &text);
  if (rc == 0)
    return 0;
  if (rc == PFP_FEED_WAIT) {
    json_decref(args);
    if (p->feed_fd >= 0)
      return PFP_FEED_WAIT;
    errorf(p, PFP_EFEED, "job feed: asked to wait, but no descriptor was "
                         "given with pfp_set_feed_fd");
    return PFP_EFEED;
  }
  if (rc < 0) {
    json_decref(args);
    char *msg = p->feed_msg;
    p->feed_msg = NULL;
    set_error(p, PFP_EFEED, msg);
    return PFP_EFEED;
  }
  if (args != NULL && (!json_is_object(args) || !pfp__json_depth_ok(args))) {
    json_decref(args);
    errorf(p, PFP_EFEED, "job feed: args of '%s' must be a JSON object "
           "nested at most %d levels", fed_name ? fed_name : "",
           PFP_MAX_DEPTH);
    return PFP_EFEED;
  }
  int text_sure =
      text != NULL && pfp__scan_object(text, strlen(text)) == PFP__SCAN_SURE;
  if (text != NULL && !text_sure) {
    /* What the scanner leaves open, jansson settles (and words). */
    char *msg = NULL;
    json_t *v = pfp__parse_object(text, strlen(text), "args", &msg);
    if (v == NULL) {
      errorf(p, PFP_EFEED, "job feed: '%s': %s", fed_name ? fed_name : "",
             msg ? msg : "out of memory");
      free(msg);
      return PFP_EFEED;
    }
    json_decref(v);
  }
  if (pfp__check_function(p, fed_name) != PFP_OK) {
    json_decref(args);
    return p->code;
  }
  fed->name = (char *)fed_name;
  fed->fn_ref = LUA_NOREF;
  fed->args_ref = LUA_NOREF;
  fed->args_json = args;
  fed->args_text = (char *)text;
  *r = fed;
  if (text != NULL && json_only)
    return decode_args_text(p, fed, r);
  return 1;
}

static int exec_next(void *ud, lua_State *L, char **name, size_t *index,
                     const char **args_text) {
  pfp_processor *p = ud;
  PFP__STACK_MARK(p->L);
  registration fed = {0};
  registration *r;
  (void)L;
  int taken = take_next(p, &fed, &r, 0);
  if (taken != 1)
    return taken;
  /* The child (or a reused worker) decodes text given beside, off the
  ** host's serial path; a child takes its tables from pages of its own
  ** (child.c's arena), so decoding there costs no more page faults than
  ** inheriting the table would. */
  *args_text = r->args_text;
  *name = pfp__strdup(r->name);
  if (*name != NULL && *args_text != NULL && p->owns_state &&
      lua_checkstack(p->L, 2)) {
    /* Text beside and a function already at hand: two pushes, neither of
    ** which can fail or run Lua code. */
    int ref = r->fn_ref;
    if (ref == LUA_NOREF && p->pushed_name != NULL &&
        strcmp(p->pushed_name, r->name) == 0)
      ref = p->pushed_ref;
    if (ref != LUA_NOREF) {
      lua_rawgeti(p->L, LUA_REGISTRYINDEX, ref);
      lua_pushnil(p->L);
      json_decref(fed.args_json);
      *index = p->next_index++;
      PFP__STACK_CHECK(p->L, 2);
      return 1;
    }
  }
  if (*name != NULL)
    lua_pushlightuserdata(p->L, r);
  /* A Lua error here is memory, or the host's own interrupt (lua.c's
  ** SIGINT hook raises "interrupted!" in the next Lua code to run): both
  ** stop the run at once. */
  p->push_code = 0;
  int rc = *name ? pcall_with(p, push_job_protected, 1, 2, PFP_EINTR, "")
                 : set_error(p, PFP_ENOMEM, NULL);
  if (rc != PFP_OK && p->push_code != 0)
    rc = p->code = p->push_code;
  json_decref(fed.args_json);
  if (rc != PFP_OK) {
    free(*name);
    *name = NULL;
    return rc;
  }
  *index = p->next_index++;
  PFP__STACK_CHECK(p->L, 2); /* the function and its args */
  return 1;
}

/* The same for a run in the fork server: the job as a name and JSON args. */
static int remote_next(void *ud, const char **name, json_t **args,
                       size_t *index) {
  pfp_processor *p = ud;
  registration fed = {0};
  registration *r;
  int taken = take_next(p, &fed, &r, 1);
  if (taken != 1)
    return taken;
  *name = r->name;
  /* A fed job's args (and decoded text) are already a new reference; a
  ** registration's are lent for as long as the message takes to write. */
  *args = r == &fed ? fed.args_json
                    : r->args_json ? json_incref(r->args_json) : NULL;
  *index = p->next_index++;
  return 1;
}

static int exec_done(void *ud, pfp_record *rec) {
  pfp_processor *p = ud;
  int stop = 0;
  p->not_ok += rec->status != PFP_STATUS_OK;
  if (p->keep_records) {
    if (rec->index >= p->caprecords) {
      size_t cap = p->caprecords ? p->caprecords : 16;
      while (cap <= rec->index)
        cap *= 2;
      pfp_record **records = realloc(p->records, cap * sizeof *records);
      if (records == NULL) {
        pfp__record_free(rec);
        return PFP_ENOMEM;
      }
      memset(records + p->caprecords, 0,
             (cap - p->caprecords) * sizeof *records);
      p->records = records;
      p->caprecords = cap;
    }
    p->records[rec->index] = rec;
    if (rec->index >= p->nrecords)
      p->nrecords = rec->index + 1;
  }
  if (p->on_record != NULL && p->on_record(p->on_record_ud, rec) != 0)
    stop = PFP_EABORT;
  if (!p->keep_records)
    pfp__record_free(rec);
  return stop;
}

static int exec_idle(void *ud) {
  pfp_processor *p = ud;
  if (p->on_idle != NULL && p->on_idle(p->on_idle_ud) != 0)
    return PFP_EABORT;
  return 0;
}

static int exec_stream_begin(void *ud, const pfp_record *head) {
  pfp_processor *p = ud;
  return p->stream(p->stream_ud, head);
}

static size_t exec_remaining(void *ud) {
  pfp_processor *p = ud;
  return has_feed(p) ? SIZE_MAX : p->nregs - p->next_reg;
}

static int new_table_protected(lua_State *L) {
  lua_newtable(L);
  return 1;
}

/* Children must stay waitable: with SIGCHLD ignored (or SA_NOCLDWAIT) the
** kernel reaps them at once and their exit status is lost. */
static int children_waitable(pfp_processor *p) {
  struct sigaction sa;
  if (sigaction(SIGCHLD, NULL, &sa) == 0 &&
      (sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT)))
    return errorf(p, PFP_EINVAL,
                  "SIGCHLD is ignored (SIG_IGN or SA_NOCLDWAIT) in this "
                  "process, so the exit status of children cannot be read: "
                  "restore its default action before pfp_execute");
  return PFP_OK;
}

/* Runs in this process: the children are forked from here. */
static int run_local(pfp_processor *p, const pfp__exec_opts *opts,
                     char **msg) {
  lua_State *L = p->L;
  if (!lua_checkstack(L, 8))
    return set_error(p, PFP_ENOMEM, NULL);
  if (p->context_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->context_ref);
  else if (pcall_with(p, new_table_protected, 0, 1, PFP_ENOMEM, "") != 0)
    return p->code;
  pfp__exec_hooks hooks = {.next = exec_next,
                           .done = exec_done,
                           .remaining = exec_remaining,
                           .idle = exec_idle,
                           .ud = p};
  /* A kept record must hold its result itself. */
  if (p->stream != NULL && !p->keep_records) {
    hooks.stream_begin = exec_stream_begin;
    hooks.stream_returned_only = p->stream_returned_only;
  }
  int top = lua_gettop(L);
  int rc = pfp__exec(L, top, opts, &hooks, msg);
  /* The engine pushes and pops each job's function and args itself. */
  assert(lua_gettop(L) == top);
  lua_settop(L, top - 1);
  return rc;
}

int pfp_execute(pfp_processor *p) {
  if (p->executing)
    return set_error(p, PFP_EBUSY, NULL);
  /* With a fork server the children are the server's, not this process's:
  ** its SIGCHLD disposition does not matter. */
  if (p->server == NULL && children_waitable(p) != PFP_OK)
    return p->code;
  free_records(p);
  p->executing = 1;
  p->next_reg = 0;
  p->next_index = 0;
  forget_checked_name(p);
  p->not_ok = 0;
  ok(p);

  /* Without a feed the job count is known: no more slots than jobs. */
  unsigned jobs = p->jobs;
  if (!has_feed(p) && p->nregs < jobs)
    jobs = p->nregs > 0 ? (unsigned)p->nregs : 1;
  pfp__exec_opts opts = {.jobs = jobs,
                         .timeout = p->timeout,
                         .kill_grace = p->kill_grace,
                         .output_limit = p->output_limit,
                         .memory_limit = p->memory_limit,
                         .wake_fd = p->wake[0],
                         .wake_write_fd = p->wake[1],
                         .feed_fd = has_feed(p) ? p->feed_fd : -1,
                         .reuse = p->reuse,
                         .interrupt_flag = &p->interrupt_flag};
  char *msg = NULL;
  int rc;
  if (p->server != NULL) {
    pfp__remote_hooks hooks = {.next = remote_next,
                               .done = exec_done,
                               .idle = exec_idle,
                               .ud = p};
    rc = pfp__server_exec(p->server, &opts, &hooks, &msg);
  } else {
    rc = run_local(p, &opts, &msg);
  }
  p->executing = 0;

  /* Records of jobs that never ran (an interrupted run) leave holes. */
  size_t kept = 0;
  for (size_t i = 0; i < p->nrecords; i++)
    if (p->records[i] != NULL)
      p->records[kept++] = p->records[i];
  p->nrecords = kept;

  if (rc != 0) {
    /* A hook's failure already set the processor's message. */
    if (msg != NULL || p->code == PFP_OK)
      set_error(p, rc, msg);
    else
      free(msg);
    return rc;
  }
  ok(p);
  return p->not_ok > INT32_MAX ? INT32_MAX : (int)p->not_ok;
}

void pfp_interrupt(pfp_processor *p) {
  if (p != NULL && p->wake[1] >= 0) {
    int saved = errno;
    char byte = 1;
    p->interrupt_flag = 1;
    /* A full pipe already holds a wake-up: the failure is harmless. */
    (void)!write(p->wake[1], &byte, 1);
    errno = saved;
  }
}

size_t pfp_record_count(const pfp_processor *p) { return p->nrecords; }

const pfp_record *pfp_record_at(const pfp_processor *p, size_t i) {
  return i < p->nrecords ? p->records[i] : NULL;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int exports_protected(lua_State *L) {
  lua_newtable(L); /* set of names */
  lua_getfield(L, LUA_REGISTRYINDEX, EXPORTS_KEY);
  for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
    lua_rawgeti(L, -1, i);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      int is_fn = lua_type(L, -1) == LUA_TFUNCTION;
      lua_pop(L, 1);
      if (is_fn && lua_type(L, -1) == LUA_TSTRING) {
        lua_pushvalue(L, -1);
        lua_pushboolean(L, 1);
        lua_rawset(L, -6);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

int pfp__exported_functions(pfp_processor *p, char ***names, size_t *count) {
  *names = NULL;
  *count = 0;
  if (p->server != NULL) {
    int rc = pfp__server_exported_functions(p->server, names, count);
    return rc == PFP_OK ? rc : set_error(p, rc, NULL);
  }
  int top = lua_gettop(p->L);
  int rc = pcall_with(p, exports_protected, 0, 1, PFP_ENOMEM, "");
  if (rc != PFP_OK)
    return rc;
  size_t n = 0, cap = 0;
  char **list = NULL;
  lua_pushnil(p->L);
  while (lua_next(p->L, -2) != 0) {
    lua_pop(p->L, 1);
    if (n == cap) {
      cap = cap ? cap * 2 : 8;
      char **grown = realloc(list, cap * sizeof *list);
      if (grown == NULL)
        break;
      list = grown;
    }
    if ((list[n] = pfp__strdup(lua_tostring(p->L, -1))) != NULL)
      n++;
  }
  lua_settop(p->L, top);
  if (n > 0)
    qsort(list, n, sizeof *list, compare_names);
  *names = list;
  *count = n;
  return PFP_OK;
}

/* Adds the global functions to the set of exported names exports_protected
** built: name -> true for exports, false for globals found in no export
** table.  Raw reads, as push_function's. */
static int names_protected(lua_State *L) {
  exports_protected(L);
  int set = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushnil(L);
  while (lua_next(L, set + 1) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TFUNCTION) {
      lua_pushvalue(L, -2);
      if (lua_rawget(L, set) == LUA_TNIL) {
        lua_pushvalue(L, -3);
        lua_pushboolean(L, 0);
        lua_rawset(L, set);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

static int compare_entries(const void *a, const void *b) {
  return strcmp(*(char *const *)a + 1, *(char *const *)b + 1);
}

int pfp__function_names(pfp_processor *p, char ***entries, size_t *count) {
  *entries = NULL;
  *count = 0;
  int top = lua_gettop(p->L);
  int rc = pcall_with(p, names_protected, 0, 1, PFP_ENOMEM, "");
  if (rc != PFP_OK)
    return rc;
  size_t cap = 0, n = 0;
  lua_pushnil(p->L);
  while (lua_next(p->L, -2) != 0) {
    lua_pop(p->L, 1);
    cap++;
  }
  char **list = calloc(cap ? cap : 1, sizeof *list);
  if (list == NULL) {
    lua_settop(p->L, top);
    return set_error(p, PFP_ENOMEM, NULL);
  }
  lua_pushnil(p->L);
  while (lua_next(p->L, -2) != 0) {
    size_t len;
    const char *name = lua_tolstring(p->L, -2, &len);
    int exported = lua_toboolean(p->L, -1);
    lua_pop(p->L, 1);
    if (strlen(name) != len)
      continue;
    if ((list[n] = pfp__strdupf("%c%s", exported ? 'x' : 'g', name)) ==
        NULL) {
      lua_settop(p->L, top);
      for (size_t i = 0; i < n; i++)
        free(list[i]);
      free(list);
      return set_error(p, PFP_ENOMEM, NULL);
    }
    n++;
  }
  lua_settop(p->L, top);
  if (n > 0)
    qsort(list, n, sizeof *list, compare_entries);
  *entries = list;
  *count = n;
  return PFP_OK;
}

/* ---- the fork server --------------------------------------------------- */

int pfp_start_fork_server(pfp_processor *p) {
  if (p->executing)
    return set_error(p, PFP_EBUSY, NULL);
  if (p->server != NULL)
    return errorf(p, PFP_EBUSY,
                  "pfp_start_fork_server: this processor has a fork server "
                  "already");
  if (!p->owns_state)
    return errorf(p, PFP_EINVAL,
                  "pfp_start_fork_server: the processor runs in a Lua state "
                  "it does not own (the Lua module): its Lua values cannot "
                  "be sent to a server");
  /* The server starts as a copy of this state: what it defines now is the
  ** cache pfp_register checks names against until the next load. */
  char **names = NULL;
  size_t count = 0;
  int rc = pfp__function_names(p, &names, &count);
  if (rc != PFP_OK)
    return rc;
  char *msg = NULL;
  rc = pfp__server_start(p, names, count, &p->server, &msg);
  if (rc != PFP_OK)
    return set_error(p, rc, msg);
  return ok(p);
}

void pfp__processor_become_server(pfp_processor *p, int wake_r, int wake_w) {
  pfp_clear(p);
  p->on_record = NULL;
  p->on_record_ud = NULL;
  p->feed = NULL;
  p->feed_text = NULL;
  p->feed_ud = NULL;
  p->feed_fd = -1;
  free(p->feed_msg);
  p->feed_msg = NULL;
  pfp__close(&p->wake[0]);
  pfp__close(&p->wake[1]);
  p->wake[0] = wake_r;
  p->wake[1] = wake_w;
  p->server = NULL;
  ok(p);
}
