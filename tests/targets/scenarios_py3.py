# -*- coding: utf-8 -*-
"""Scenarios for Python 3 only (imported by scenarios.py): non-ASCII names.

A function with a non-ASCII name in this (ASCII-named) file, and a module with a non-ASCII file
name, `modülé_日本.py`, staged by the harness from scenarios_unicode_module.py.
"""
import importlib
import sys
import time


def función_ñ(register):
    register(sys._getframe()); time.sleep(3600)


class Ça:
    def méthode(self, register):
        def 内側():
            register(sys._getframe()); time.sleep(3600)
        return 内側()


def non_ascii_function(register):
    return función_ñ(register)


def non_ascii_method(register):
    return Ça().méthode(register)


def non_ascii_file(register):
    module = importlib.import_module("modülé_日本")
    return module.grüße(register)


def scenarios(register):
    return [
        ("non_ascii_function", lambda: non_ascii_function(register)),
        ("non_ascii_method", lambda: non_ascii_method(register)),
        ("non_ascii_file", lambda: non_ascii_file(register)),
    ]
