# pfp — parallel function processor.  `make help` lists the targets.

PREFIX    ?= /usr/local
DESTDIR   ?=
BUILD     ?= build
CC        ?= cc
PKG_CONFIG ?= pkg-config
LUA_PKG   ?= lua5.4
LUA       ?= lua5.4
BUSTED    ?= /usr/bin/busted

VERSION   := $(shell sed -n 's/^\#define PFP_VERSION "\(.*\)"/\1/p' include/pfp.h)

DEPS_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(LUA_PKG) jansson)
LUA_LIBS    := $(shell $(PKG_CONFIG) --libs $(LUA_PKG))
JANSSON_LIBS := $(shell $(PKG_CONFIG) --libs jansson)

CFLAGS    ?= -O2 -g
WARNINGS  := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
ALL_CFLAGS := -std=c11 $(WARNINGS) $(CFLAGS) -fPIC -fvisibility=hidden \
              -DPFP_BUILDING -D_GNU_SOURCE -Iinclude -Iruntime $(DEPS_CFLAGS)
LDFLAGS   ?=
# Symbols are bound when a program starts, not on first call: a forked child
# would otherwise resolve (and copy pages for) every libc call it makes.
BIND_NOW  := -Wl,-z,now

LIBDIR    := $(PREFIX)/lib
INCDIR    := $(PREFIX)/include
BINDIR    := $(PREFIX)/bin
PCDIR     := $(LIBDIR)/pkgconfig
LUA_CMOD_DIR := $(LIBDIR)/lua/5.4

ENGINE_SRC := runtime/buf.c runtime/sys.c runtime/jsonw.c runtime/convert.c \
              runtime/wire.c runtime/record.c runtime/child.c runtime/exec.c \
              runtime/processor.c runtime/luamod.c \
              runtime/jobs_line.c runtime/json_scan.c runtime/server.c
ENGINE_OBJ := $(ENGINE_SRC:runtime/%.c=$(BUILD)/obj/%.o)
HEADERS    := include/pfp.h runtime/pfp_internal.h

PROGRAMS := $(BUILD)/pfp-run $(BUILD)/libpfp.a $(BUILD)/libpfp.so \
            $(BUILD)/pfp.so
C_TESTS  := $(BUILD)/test_api $(BUILD)/test_server $(BUILD)/test_scan \
            $(BUILD)/test_buf \
            $(BUILD)/fail_fork.so \
            $(BUILD)/close_fd.so
ifeq ($(SANITIZE),)
C_TESTS  += $(BUILD)/test_oom
endif

.PHONY: all help test example asan valgrind install uninstall clean

all: $(PROGRAMS)

help:
	@echo "make              build pfp-run, libpfp.a, libpfp.so and the Lua module pfp.so"
	@echo "make test         build everything and run all tests (busted specs and C tests)"
	@echo "make example      run the counters example"
	@echo "make asan         build and run the tests with AddressSanitizer and UBSan"
	@echo "make valgrind     the C tests and a pfp-run session under valgrind memcheck"
	@echo "make fuzz         libFuzzer targets, FUZZ_SECONDS each (clang needed)"
	@echo "make stress       load tests: 100k calls, -j 500, huge results, a random mix"
	@echo "make soak         SECONDS of rounds in one host, checking it stays clean"
	@echo "make bench        pfp beside its peers (make bench-deps first); bench-smoke: seconds"
	@echo "make install      install under PREFIX ($(PREFIX)), honouring DESTDIR, with pfp.pc"
	@echo "make clean        remove $(BUILD)/"

$(BUILD)/obj/%.o: runtime/%.c $(HEADERS) | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/obj:
	mkdir -p $@

$(BUILD)/libpfp.a: $(ENGINE_OBJ)
	rm -f $@
	ar rcs $@ $^

# The shared library links Lua and jansson; only pfp_* symbols are exported.
$(BUILD)/libpfp.so: $(ENGINE_OBJ)
	$(CC) -shared -Wl,-soname,libpfp.so.0 $(BIND_NOW) -o $@ $^ $(LDFLAGS) $(LUA_LIBS) $(JANSSON_LIBS)

# The Lua module takes Lua's symbols from the interpreter that loads it, as
# Debian's Lua modules do, so it does not link liblua.
$(BUILD)/pfp.so: $(ENGINE_OBJ)
	$(CC) -shared $(BIND_NOW) -o $@ $^ $(LDFLAGS) $(JANSSON_LIBS)

# pfp-run takes Lua from liblua5.4.a when Debian's liblua5.4-dev has it:
# calls into Lua then need no PLT, and a forked child has no symbols left to
# resolve.  -rdynamic exports Lua's API, so that C modules a script requires (cjson,
# lpeg: they do not link liblua themselves) find it in pfp-run.
# Lua comes first, whole, after runtime/lua_first.c's fixed block, so that
# its code sits at the same place whatever the size of pfp's (see there).
LUA_STATIC := $(wildcard $(shell $(PKG_CONFIG) --variable=libdir $(LUA_PKG))/liblua5.4.a)
WHOLE_LUA := -Wl,--whole-archive $(LUA_STATIC) -Wl,--no-whole-archive
PFP_RUN_LUA_FIRST := $(if $(LUA_STATIC),$(BUILD)/obj/lua_first.o -rdynamic $(WHOLE_LUA))
PFP_RUN_LUA := $(if $(LUA_STATIC),-ldl,$(LUA_LIBS))
# jansson too, from libjansson.a when libjansson-dev has it: each shared
# library is five more mappings for every fork to copy and every child to
# tear down (libm stays shared: its static archive needs a static libc).
JANSSON_STATIC := $(wildcard $(shell $(PKG_CONFIG) --variable=libdir jansson)/libjansson.a)
PFP_RUN_JANSSON := $(if $(JANSSON_STATIC),$(JANSSON_STATIC),$(JANSSON_LIBS))

$(BUILD)/pfp-run: $(BUILD)/obj/pfp_run.o $(BUILD)/libpfp.a $(BUILD)/obj/lua_first.o
	$(CC) $(BIND_NOW) -o $@ $(PFP_RUN_LUA_FIRST) $(BUILD)/obj/pfp_run.o \
	  $(BUILD)/libpfp.a $(LDFLAGS) $(PFP_RUN_LUA) $(PFP_RUN_JANSSON) -lm

$(BUILD)/test_api: spec/c/test_api.c spec/c/tap.h $(BUILD)/libpfp.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libpfp.a $(LDFLAGS) $(LUA_LIBS) $(JANSSON_LIBS) -lm

$(BUILD)/test_server: spec/c/test_server.c spec/c/tap.h $(BUILD)/libpfp.a $(HEADERS)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libpfp.a $(LDFLAGS) $(LUA_LIBS) $(JANSSON_LIBS) -lm

$(BUILD)/test_scan: spec/c/test_scan.c spec/c/tap.h $(BUILD)/libpfp.a $(HEADERS)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libpfp.a $(LDFLAGS) $(LUA_LIBS) $(JANSSON_LIBS) -lm

$(BUILD)/test_buf: spec/c/test_buf.c spec/c/tap.h $(BUILD)/libpfp.a $(HEADERS)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libpfp.a $(LDFLAGS) $(LUA_LIBS) $(JANSSON_LIBS) -lm

$(BUILD)/test_oom: spec/c/test_oom.c $(BUILD)/libpfp.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libpfp.a $(LDFLAGS) $(LUA_LIBS) $(JANSSON_LIBS) -lm

# A test shim, preloaded into pfp-run by the fault-injection spec.
$(BUILD)/fail_fork.so: spec/c/fail_fork.c
	$(CC) -shared -fPIC -O1 -Wall -Wextra -o $@ $< -ldl

# A Lua C function that closes a descriptor, loaded by the faults spec.
$(BUILD)/close_fd.so: spec/c/close_fd.c
	$(CC) -shared -fPIC -O1 -Wall -Wextra $(DEPS_CFLAGS) -o $@ $<

test: all $(C_TESTS)
	@BUILD=$(BUILD) LUA=$(LUA) BUSTED=$(BUSTED) sh spec/run-tests.sh

example: all
	$(BUILD)/pfp-run --context scripts/counters.json scripts/counters.lua \
	    counter1='{"Operation": "ADD"}' counter1='{"Operation": "MULTIPLY"}' \
	    counter2='{"Operation": "ADD"}' counter2='{"Operation": "MULTIPLY"}'

# Sanitizer build: everything rebuilt in its own directory and the whole
# suite run against it.  The Lua module is loaded by an uninstrumented
# lua5.4, so the ASan runtime is preloaded for the busted specs.
asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" SANITIZE=1 test

# Memcheck over the C tests and a pfp-run session (needs valgrind:
# PFP_DEPS_EXTRA=valgrind scripts/with-deps make valgrind).
valgrind: all $(BUILD)/test_api $(BUILD)/test_server
	@BUILD=$(BUILD) sh spec/valgrind.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) \
	    $(DESTDIR)$(PCDIR) $(DESTDIR)$(LUA_CMOD_DIR)
	install -m 755 $(BUILD)/pfp-run $(DESTDIR)$(BINDIR)/pfp-run
	install -m 644 $(BUILD)/libpfp.a $(DESTDIR)$(LIBDIR)/libpfp.a
	install -m 755 $(BUILD)/libpfp.so $(DESTDIR)$(LIBDIR)/libpfp.so.0
	ln -sf libpfp.so.0 $(DESTDIR)$(LIBDIR)/libpfp.so
	install -m 644 include/pfp.h $(DESTDIR)$(INCDIR)/pfp.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LUA_PKG@|$(LUA_PKG)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' pfp.pc.in > $(DESTDIR)$(PCDIR)/pfp.pc
	chmod 644 $(DESTDIR)$(PCDIR)/pfp.pc
	install -m 755 $(BUILD)/pfp.so $(DESTDIR)$(LUA_CMOD_DIR)/pfp.so

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/pfp-run $(DESTDIR)$(LIBDIR)/libpfp.a \
	    $(DESTDIR)$(LIBDIR)/libpfp.so $(DESTDIR)$(LIBDIR)/libpfp.so.0 \
	    $(DESTDIR)$(INCDIR)/pfp.h $(DESTDIR)$(PCDIR)/pfp.pc \
	    $(DESTDIR)$(LUA_CMOD_DIR)/pfp.so

clean:
	rm -rf build build-asan

# ---- fuzzing (spec/fuzz/) ---------------------------------------------------
# `make fuzz FUZZ_SECONDS=N` builds each target with clang's libFuzzer, ASan
# and UBSan into build-fuzz/ (the runtime compiled afresh, instrumented) and
# runs each for N seconds; any crash, leak or hang fails.  The same targets
# are also built with $(CC) and spec/fuzz/replay.c into $(BUILD)/, and
# `make test` replays every seed and every regression input through them.
# CI: PFP_DEPS_EXTRA="clang libclang-rt-14-dev" scripts/with-deps make fuzz

FUZZ_SECONDS ?= 10
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_TARGETS := fuzz_frames fuzz_json_lua fuzz_lua_values fuzz_inputs
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 $(WARNINGS) -O1 -g -DPFP_BUILDING -D_GNU_SOURCE \
                -Iinclude -Iruntime -Ispec/fuzz $(DEPS_CFLAGS)
FUZZ_OBJ     := $(ENGINE_SRC:runtime/%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)
REPLAY       := $(FUZZ_TARGETS:%=$(BUILD)/replay_%)

# The objects are only prerequisites of pattern rules: keep them anyway.
.SECONDARY: $(FUZZ_OBJ)

.PHONY: fuzz fuzz-build clean-fuzz

fuzz: $(FUZZ_BINS)
	@sh spec/fuzz/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-build: $(FUZZ_BINS)

$(FUZZ_BUILD)/obj/%.o: runtime/%.c $(HEADERS) | $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -c $< -o $@

$(FUZZ_BUILD)/obj:
	mkdir -p $@

$(FUZZ_BUILD)/fuzz_%: spec/fuzz/fuzz_%.c spec/fuzz/fuzz.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -o $@ $< $(FUZZ_OBJ) \
	    $(LUA_LIBS) $(JANSSON_LIBS) -lm

$(BUILD)/replay_%: spec/fuzz/%.c spec/fuzz/replay.c spec/fuzz/fuzz.h \
                   $(BUILD)/libpfp.a
	$(CC) $(ALL_CFLAGS) -Ispec/fuzz -o $@ $< spec/fuzz/replay.c \
	    $(BUILD)/libpfp.a $(LDFLAGS) $(LUA_LIBS) $(JANSSON_LIBS) -lm

# Added here rather than in the rules above: a prerequisite list is expanded
# when read, before these variables exist.  `make asan` runs `test` with
# BUILD=build-asan, so the replay binaries are built with the sanitizers too.
test: $(REPLAY)

clean: clean-fuzz

clean-fuzz:
	rm -rf $(FUZZ_BUILD)
# ---- end of fuzzing ----------------------------------------------------------

# ---- load, stress and soak tests (spec/stress/; not part of `make test`) ----
# make stress             a-g: 100,000 calls, -j 500 and low limits, a 200 MB
#                         result and 2,000 x 1 MB of stdout, a 5,000-call
#                         random mix (also on an overloaded machine),
#                         unwritable output, a 1 GiB host with and without
#                         its fork server; PASS/FAIL lines with the
#                         numbers.  Subset: STRESS_TESTS="mix output".
# make soak SECONDS=N     rounds of random mixes in one lua5.4 host for N s
#                         (default 60), checking children, fds and memory.
SECONDS ?= 60
STRESS_TESTS ?=

.PHONY: stress soak

$(BUILD)/stress/measure: spec/stress/measure.c
	mkdir -p $(BUILD)/stress
	$(CC) -std=c11 -O2 -g $(WARNINGS) -o $@ $<

$(BUILD)/stress/host_size: spec/stress/host_size.c $(BUILD)/libpfp.a
	mkdir -p $(BUILD)/stress
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libpfp.a $(LDFLAGS) $(LUA_LIBS) $(JANSSON_LIBS) -lm

stress: all $(BUILD)/stress/measure $(BUILD)/stress/host_size
	@BUILD=$(BUILD) LUA=$(LUA) sh spec/stress/run.sh $(STRESS_TESTS)

soak: all $(BUILD)/stress/measure
	@BUILD=$(BUILD) LUA=$(LUA) sh spec/stress/soak.sh $(SECONDS)
# ---- end of stress and soak --------------------------------------------------

# ---- benchmarks (bench/) -----------------------------------------------------
# `make bench` measures pfp beside its peers; `make bench-deps` installs the
# peers from Debian.  Not part of `make test`.
include bench/bench.mk
