#!/usr/bin/env python3
"""A C++ program puts, Python gets: one named queue between them. The C++ side is
python/tests/interop_producer.cpp (mproc::Queue<mproc::Bytes>::open_or_create(name), then
put); Python opens the same name with mproc.Queue.open_or_create and gets bytes.

    cpp_producer.py PATH_TO/mproc_py_interop_producer
"""

import os
import subprocess
import sys

import mproc

if __name__ == "__main__":
    producer = sys.argv[1] if len(sys.argv) > 1 else os.environ["MPROC_INTEROP_PRODUCER"]
    name = f"demo-interop-{os.getpid()}"
    q = mproc.Queue.open_or_create(name)
    subprocess.run([producer, name, "5", "bytes"], check=True, timeout=60)
    for _ in range(5):
        print(f"  Python got {q.get(timeout=10)!r} from the C++ producer")
    q.close()  # drained and last user: the name is removed
