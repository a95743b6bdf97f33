#pragma once
/// mproc — Python's multiprocessing as a crash-safe C++20 library for Linux.
/// The umbrella header: include it, or one header per concept.
#include "mproc/acquired.hpp"
#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/file_lock.hpp"
#include "mproc/lock.hpp"
#include "mproc/named_options.hpp"
#include "mproc/pipe.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/value.hpp"
