/* A program that is not python but embeds it: runs argv[1] as a Python script with the
 * remaining arguments as sys.argv, like `python SCRIPT ARGS...`. Linked against libpython. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT [ARGS...]\n", argv[0]);
        return 2;
    }
    Py_Initialize();
    PyObject *args = PyList_New(0);
    for (int i = 1; i < argc; i++) {
        PyObject *s = PyUnicode_DecodeFSDefault(argv[i]);
        PyList_Append(args, s);
        Py_DECREF(s);
    }
    PySys_SetObject("argv", args);
    Py_DECREF(args);
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    int rc = PyRun_SimpleFileExFlags(f, argv[1], 1, NULL);
    Py_Finalize();
    return rc == 0 ? 0 : 1;
}
