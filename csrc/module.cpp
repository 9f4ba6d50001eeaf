// The importable module mlrank._C. It exposes no Python functions: importing it
// loads the shared library, whose static initialisers register the ops with the
// PyTorch dispatcher (torch.ops.mlrank.*). Only Python.h is included so this
// file compiles in a second.
#include <Python.h>

static struct PyModuleDef mlrank_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&mlrank_module); }
