# -*- coding: utf-8 -*-
# Staged by the harness as `modülé_日本.py` (a non-ASCII file name); Python 3 only.
import sys
import time


def grüße(register):
    register(sys._getframe()); time.sleep(3600)
