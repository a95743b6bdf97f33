"""Python's multiprocessing start methods, timed as bench/start_bench.cpp times mproc's: start()
and join() of a child whose target returns at once. Prints one line per method:
"METHOD MEDIAN_US P10_US P90_US ROUNDS". Usage: python3 start_bench.py ROUNDS"""
import multiprocessing as mp
import sys
import time


def noop():
    pass


def measure(method, rounds):
    ctx = mp.get_context(method)
    p = ctx.Process(target=noop)  # warm-up: starts the forkserver, imports what spawn needs
    p.start()
    p.join()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        times.append((time.perf_counter() - t0) * 1e6)
        assert p.exitcode == 0
    times.sort()
    return times[len(times) // 2], times[len(times) // 10], times[len(times) * 9 // 10]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 51
    for method in ("fork", "spawn", "forkserver"):
        # spawn starts a whole interpreter (~50 ms): fewer rounds keep the run short.
        n = rounds if method != "spawn" else max(5, rounds // 5) | 1
        med, p10, p90 = measure(method, n)
        print(f"{method} {med:.1f} {p10:.1f} {p90:.1f} {n}", flush=True)


if __name__ == "__main__":
    main()
