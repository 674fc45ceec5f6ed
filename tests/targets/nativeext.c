/* A C extension for pyspy's native-stack test, built by the test against each interpreter's
 * headers (2.7 and 3.x). nativeext.call_back(f) calls f() from C: while f blocks, the thread's
 * stack is Python (f) -> C (nativeext_call_back) -> Python (the caller). */
#include <Python.h>

/* Written after the call, so the call is not a tail call and this function keeps its frame. */
static volatile long calls_returned;

static PyObject *
nativeext_call_back(PyObject *self, PyObject *callback)
{
    PyObject *result = PyObject_CallObject(callback, NULL); /* NATIVE_CALL_LINE */
    calls_returned++;
    (void)self;
    return result;
}

static PyMethodDef methods[] = {
    {"call_back", nativeext_call_back, METH_O, "Call the argument from C."},
    {NULL, NULL, 0, NULL},
};

#if PY_MAJOR_VERSION >= 3
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "nativeext", NULL, -1, methods};

PyMODINIT_FUNC
PyInit_nativeext(void)
{
    return PyModule_Create(&module);
}
#else
PyMODINIT_FUNC
initnativeext(void)
{
    Py_InitModule("nativeext", methods);
}
#endif
