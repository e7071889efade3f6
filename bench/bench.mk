# Benchmarks (bench/README.md), included by the top Makefile.
#
# make bench          builds pfp and the helpers, then measures pfp beside
#                     its peers: BENCH_RUNS rounds (default 5), every
#                     workload or BENCH_ONLY="a c", sizes times BENCH_SCALE,
#                     BENCH_JOBS in flight (default: online CPUs)
# make bench-smoke    every workload and peer once at tiny sizes (seconds);
#                     fails when any measurement fails
# make bench-deps     installs the peers from Debian (python3, GNU parallel)

BENCH_RUNS  ?= 5
BENCH_ONLY  ?=
BENCH_SCALE ?= 1
BENCH_JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON      ?= python3

BENCH_DIR  := $(BUILD)/bench
BENCH_BINS := $(BENCH_DIR)/timeit $(BENCH_DIR)/floor $(BENCH_DIR)/pipe_raw \
              $(BENCH_DIR)/embed_host $(BENCH_DIR)/luarun
BENCH_CFLAGS := -std=c11 -O2 -g $(WARNINGS)
# The fork server and worker reuse are new: embed_host uses each only when
# pfp.h declares it (evaluated when embed_host is built).
BENCH_FEATURES = \
  $(shell grep -q pfp_start_fork_server include/pfp.h && echo -DHAVE_FORK_SERVER) \
  $(shell grep -q pfp_set_reuse include/pfp.h && echo -DHAVE_REUSE)

.PHONY: bench bench-smoke bench-deps

bench: all $(BENCH_BINS)
	$(LUA) bench/bench.lua --build $(BUILD) --runs $(BENCH_RUNS) \
	    --jobs $(BENCH_JOBS) --scale $(BENCH_SCALE) --only "$(BENCH_ONLY)" \
	    --lua $(LUA) --python $(PYTHON)

# Sizes scaled so every workload takes a fraction of a second; one round.
bench-smoke: all $(BENCH_BINS)
	$(LUA) bench/bench.lua --build $(BUILD) --runs 1 --jobs $(BENCH_JOBS) \
	    --scale 0.01 --lua $(LUA) --python $(PYTHON)

bench-deps:
	PFP_DEPS_EXTRA="python3 parallel" scripts/with-deps true

$(BENCH_DIR):
	mkdir -p $@

$(BENCH_DIR)/timeit: bench/timeit.c | $(BENCH_DIR)
	$(CC) $(BENCH_CFLAGS) -o $@ $<

$(BENCH_DIR)/pipe_raw: bench/pipe_raw.c | $(BENCH_DIR)
	$(CC) $(BENCH_CFLAGS) -o $@ $<

# luarun links the shared liblua5.4, as pfp does.
$(BENCH_DIR)/luarun: bench/luarun.c | $(BENCH_DIR)
	$(CC) $(BENCH_CFLAGS) $(DEPS_CFLAGS) -o $@ $< $(LDFLAGS) $(LUA_LIBS)

# The floor and the C host are linked as pfp-run is ($(BIND_NOW)), so that
# their children and pfp-run's pay the same for the program they run in.
$(BENCH_DIR)/floor: bench/floor.c | $(BENCH_DIR)
	$(CC) $(BENCH_CFLAGS) $(DEPS_CFLAGS) $(BIND_NOW) -o $@ $< $(LDFLAGS) \
	    $(LUA_LIBS)

$(BENCH_DIR)/embed_host: bench/embed_host.c include/pfp.h $(BUILD)/libpfp.a \
                         | $(BENCH_DIR)
	$(CC) $(BENCH_CFLAGS) $(BENCH_FEATURES) -Iinclude $(DEPS_CFLAGS) \
	    $(BIND_NOW) -o $@ $< $(BUILD)/libpfp.a $(LDFLAGS) $(LUA_LIBS) \
	    $(JANSSON_LIBS) -lm
