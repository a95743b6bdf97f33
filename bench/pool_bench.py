"""Python's multiprocessing.Pool on pool_bench's workloads; prints three numbers:
map overhead (us/task), serial primes time (s), pool primes time (s).
Usage: python3 pool_bench.py TASKS LIMIT RANGES WORKERS"""
import multiprocessing as mp
import sys
import time


def plus_one(x):
    return x + 1


def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def count_primes(r):
    return sum(1 for n in range(r[0], r[1]) if is_prime(n))


def main():
    tasks, limit, nranges, workers = (int(a) for a in sys.argv[1:5])
    # Python's trial division is ~50x slower than C++'s: shrink the prime workload so the run
    # stays short, and compare speed-ups (ratios), not times.
    limit = max(limit // 20, 1000)
    ranges = [(limit * i // nranges, limit * (i + 1) // nranges) for i in range(nranges)]
    with mp.get_context("fork").Pool(workers) as pool:
        t0 = time.perf_counter()
        out = pool.map(plus_one, range(tasks), 1000)
        overhead = (time.perf_counter() - t0) * 1e6 / tasks
        assert out[-1] == tasks
        t0 = time.perf_counter()
        serial = sum(count_primes(r) for r in ranges)
        serial_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        parallel = sum(pool.imap_unordered(count_primes, ranges))
        pool_s = time.perf_counter() - t0
        assert serial == parallel
    print(f"{overhead} {serial_s} {pool_s}")


if __name__ == "__main__":
    main()
