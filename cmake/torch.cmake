# LibTorch comes from the torch wheel in the project venv (.venv/, pinned by requirements.txt to
# the version the GPU machines run), not from Debian. Defines the target kiln::torch.
#
# The PyPI wheel is a CUDA build, and its share/cmake/Torch config insists on finding a CUDA
# toolkit (nvcc) even to link the CPU parts. So:
#   KILN_TORCH_CUDA=OFF (default, any machine): kiln::torch is made here from the wheel's own
#     headers and its CPU libraries (libtorch_cpu, libc10). The binary then never loads the CUDA
#     libraries of the wheel, though libtorch_cpu still needs the CUDA runtime and CUPTI shared
#     objects that the venv's nvidia packages carry (found through the wheel's RPATH).
#   KILN_TORCH_CUDA=ON (a GPU machine with a CUDA toolkit): find_package(Torch) from the wheel's
#     share/cmake/Torch, with everything it links.
# Torch_DIR, when given, points at another LibTorch's share/cmake/Torch and implies the second way.
set(KILN_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH
    "The project venv's interpreter (scripts/install-deps.sh makes it)")
option(KILN_TORCH_CUDA "Link LibTorch through its CMake config, CUDA included" OFF)

if(Torch_DIR OR KILN_TORCH_CUDA)
  if(NOT Torch_DIR)
    execute_process(COMMAND ${KILN_PYTHON} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
      OUTPUT_VARIABLE _kiln_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "cannot import torch with ${KILN_PYTHON}: run scripts/install-deps.sh")
    endif()
    set(Torch_DIR "${_kiln_torch_prefix}/Torch")
  endif()
  find_package(Torch REQUIRED)
  add_library(kiln_torch INTERFACE)
  target_link_libraries(kiln_torch INTERFACE ${TORCH_LIBRARIES})
  set(KILN_TORCH_ROOT "${TORCH_INSTALL_PREFIX}")
else()
  execute_process(
    COMMAND ${KILN_PYTHON} -c
      "import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
    OUTPUT_VARIABLE _kiln_torch_info OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "cannot import torch with ${KILN_PYTHON}: run scripts/install-deps.sh")
  endif()
  string(REPLACE "\n" ";" _kiln_torch_info "${_kiln_torch_info}")
  list(GET _kiln_torch_info 0 KILN_TORCH_ROOT)
  list(GET _kiln_torch_info 1 _kiln_torch_version)
  list(GET _kiln_torch_info 2 _kiln_torch_abi)
  find_library(KILN_TORCH_CPU_LIB torch_cpu PATHS "${KILN_TORCH_ROOT}/lib" NO_DEFAULT_PATH REQUIRED)
  find_library(KILN_C10_LIB c10 PATHS "${KILN_TORCH_ROOT}/lib" NO_DEFAULT_PATH REQUIRED)
  # The wheel's include/ also carries the fmt it was built with (v12); as a -isystem directory it
  # would shadow Debian's fmt (v9), which spdlog and Kiln use. The build sees the wheel's include/
  # through a folder of links to everything in it but fmt (LibTorch's public headers do not
  # include fmt).
  set(_kiln_torch_include "${CMAKE_BINARY_DIR}/torch-include")
  file(REMOVE_RECURSE "${_kiln_torch_include}")
  file(MAKE_DIRECTORY "${_kiln_torch_include}")
  file(GLOB _kiln_torch_entries RELATIVE "${KILN_TORCH_ROOT}/include" "${KILN_TORCH_ROOT}/include/*")
  foreach(_entry IN LISTS _kiln_torch_entries)
    if(NOT _entry STREQUAL "fmt")
      file(CREATE_LINK "${KILN_TORCH_ROOT}/include/${_entry}" "${_kiln_torch_include}/${_entry}" SYMBOLIC)
    endif()
  endforeach()
  add_library(kiln_torch INTERFACE)
  target_include_directories(kiln_torch SYSTEM INTERFACE
    "${_kiln_torch_include}" "${KILN_TORCH_ROOT}/include/torch/csrc/api/include")
  target_compile_definitions(kiln_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${_kiln_torch_abi})
  target_link_libraries(kiln_torch INTERFACE ${KILN_TORCH_CPU_LIB} ${KILN_C10_LIB})
  # The wheel's libraries find each other and the CUDA runtime through their own RPATH; the
  # binaries find the wheel's lib/ through theirs.
  set(CMAKE_BUILD_RPATH "${KILN_TORCH_ROOT}/lib")
  message(STATUS "LibTorch ${_kiln_torch_version} (CPU libraries, C++11 ABI ${_kiln_torch_abi}) from ${KILN_TORCH_ROOT}")
endif()
add_library(kiln::torch ALIAS kiln_torch)
