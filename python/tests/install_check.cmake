# `cmake --install` puts an importable mproc package under the prefix: install the build tree
# into a scratch prefix, then import mproc from there and move one message through a queue.
# -DBUILD_DIR= -DPREFIX= -DPACKAGE_DIR= (relative to PREFIX) -DPYTHON=
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX}
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${PREFIX}/${PACKAGE_DIR}
          "MPROC_PYTHON_PREFIX=$ENV{MPROC_TEST_PREFIX}install-" ${PYTHON} -c
          "import mproc, sys; q = mproc.Queue(); q.put(('installed', 1)); assert q.get() == ('installed', 1); q.close(); assert mproc.__file__.startswith(sys.argv[1]), mproc.__file__"
          ${PREFIX}
  RESULT_VARIABLE rc)
file(REMOVE_RECURSE ${PREFIX})
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "importing the installed mproc failed: ${rc}")
endif()
