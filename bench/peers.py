"""Python's process pools doing the benchmarks' work, for bench/bench.lua.

    python3 peers.py MODE WORK [--jobs J] [--hold-mib M]

MODE is how the calls are spread over processes:
  executor  concurrent.futures.ProcessPoolExecutor(J).map (default chunksize)
  pool      multiprocessing.Pool(J).map (default chunksize)
  process   one multiprocessing.Process per call, J at once, each sending
            its result back on its own pipe

WORK is what is run, the same work as pfp's functions in work.lua:
  sq:N        sq(i) -> {"i": i, "sq": i * i} for i = 1 .. N
  jobs:FILE   the same calls read from a pfp jobs file ({"function": "sq",
              "args": {"i": I}} per line)
  blob:BYTES  one call returning a string of BYTES bytes

With --hold-mib the parent first allocates and writes M MiB, as a host that
has grown would, so that every process it forks starts from a big one.
The parent checks every result, then prints

    calls=N check=C elapsed_s=S check_s=T

C is the sum of the sq values (sq, jobs) or the length of the result
(blob); S times the map alone (from creating the pool to the last result),
T the check, which bench.lua takes off the wall time: checking is not part
of the work, and pfp's output is checked outside its time too.  Exits 1
when a result is wrong.
"""

import argparse
import json
import multiprocessing
import multiprocessing.connection
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def sq(i):
    return {"i": i, "sq": i * i}


def blob(size):
    return "x" * size


def run_executor(function, inputs, jobs):
    with ProcessPoolExecutor(max_workers=jobs) as executor:
        return list(executor.map(function, inputs))


def run_pool(function, inputs, jobs):
    with multiprocessing.Pool(jobs) as pool:
        return pool.map(function, inputs)


def call_and_send(connection, function, value):
    connection.send(function(value))
    connection.close()


def run_processes(function, inputs, jobs):
    """One Process per call, at most `jobs` at once; results in input order."""
    results = [None] * len(inputs)
    running = {}  # reading end of the result pipe -> (index, process)
    next_input = 0
    while next_input < len(inputs) or running:
        while next_input < len(inputs) and len(running) < jobs:
            reader, writer = multiprocessing.Pipe(duplex=False)
            process = multiprocessing.Process(
                target=call_and_send, args=(writer, function, inputs[next_input]))
            process.start()
            writer.close()
            running[reader] = (next_input, process)
            next_input += 1
        for reader in multiprocessing.connection.wait(list(running)):
            index, process = running.pop(reader)
            # Received before joining: a big result would otherwise fill the
            # pipe and the child could never exit.
            results[index] = reader.recv()
            reader.close()
            process.join()
    return results


MODES = {"executor": run_executor, "pool": run_pool, "process": run_processes}


def read_jobs(path):
    with open(path, encoding="utf-8") as jobs:
        return [json.loads(line)["args"]["i"] for line in jobs if line.strip()]


def parse_work(text):
    kind, _, value = text.partition(":")
    if kind == "sq":
        return sq, list(range(1, int(value) + 1))
    if kind == "jobs":
        return sq, read_jobs(value)
    if kind == "blob":
        return blob, [int(value)]
    raise SystemExit(f"peers.py: unknown work {text!r} (sq:N, jobs:FILE, blob:BYTES)")


def check(function, inputs, results):
    """The check value, or None when a result is not what it must be."""
    if len(results) != len(inputs):
        return None
    if function is sq:
        if any(r != {"i": i, "sq": i * i} for i, r in zip(inputs, results)):
            return None
        return sum(r["sq"] for r in results)
    if any(len(r) != size or r.count("x") != size
           for size, r in zip(inputs, results)):
        return None
    return sum(len(r) for r in results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("work")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--hold-mib", type=int, default=0)
    args = parser.parse_args()

    function, inputs = parse_work(args.work)
    # Written, so every page is resident; alive until main returns.
    held = b"\x01" * (args.hold_mib << 20)  # noqa: F841
    start = time.monotonic()
    results = MODES[args.mode](function, inputs, args.jobs)
    elapsed = time.monotonic() - start
    value = check(function, inputs, results)
    check_s = time.monotonic() - start - elapsed
    print(f"calls={len(results)} check={value} elapsed_s={elapsed:.6f} "
          f"check_s={check_s:.6f}")
    return 0 if value is not None else 1


if __name__ == "__main__":
    sys.exit(main())
