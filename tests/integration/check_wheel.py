"""Reads a wheel the way installers do and checks it against the wheel specification.

Usage: python check_wheel.py WHEEL VERSION BINARY_OUT

Checks: the archive's CRCs (zipfile.testzip); exactly the expected files; every RECORD row's
sha256 (urlsafe base64, unpadded) and size, and RECORD's own row without them; WHEEL's
version, Root-Is-Purelib and one Tag per tag of the file name; METADATA's version, name and
description; the script's mode (a regular file, 0o755). Writes the packaged binary to
BINARY_OUT and prints one JSON object: {"problems": [...], "python_tag", "abi_tag",
"platform_tags"}.
"""

import base64
import csv
import email.parser
import hashlib
import io
import json
import os
import stat
import sys
import zipfile


def check(wheel_path, version, binary_out):
    problems = []
    name = os.path.basename(wheel_path)
    if not name.endswith(".whl") or name.count("-") != 4:
        return ["file name %r is not NAME-VERSION-PY-ABI-PLATFORM.whl" % name], None
    dist, ver, py, abi, platforms = name[: -len(".whl")].split("-")
    if ver != version:
        problems.append("file name version %r, want %r" % (ver, version))
    data_dir = "%s-%s.data" % (dist, ver)
    info_dir = "%s-%s.dist-info" % (dist, ver)
    script = data_dir + "/scripts/pyspy"
    record_path = info_dir + "/RECORD"
    expected = {
        script,
        info_dir + "/METADATA",
        info_dir + "/WHEEL",
        info_dir + "/LICENSE",
        record_path,
    }
    with zipfile.ZipFile(wheel_path) as z:
        bad = z.testzip()
        if bad is not None:
            problems.append("bad CRC in %s" % bad)
        names = z.namelist()
        if sorted(names) != sorted(expected):
            problems.append("files %s, want %s" % (sorted(names), sorted(expected)))

        recorded = set()
        with z.open(record_path) as f:
            for row in csv.reader(io.TextIOWrapper(f, encoding="utf-8")):
                if len(row) != 3:
                    problems.append("RECORD row %r has %d fields" % (row, len(row)))
                    continue
                path, digest, size = row
                recorded.add(path)
                if path == record_path:
                    if digest or size:
                        problems.append("RECORD's own row has a hash or size: %r" % row)
                    continue
                data = z.read(path)
                want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                if digest != "sha256=" + want.decode("ascii"):
                    problems.append("RECORD hash of %s is %s, want sha256=%s" % (path, digest, want))
                if size != str(len(data)):
                    problems.append("RECORD size of %s is %s, want %d" % (path, size, len(data)))
        if recorded != set(names):
            problems.append("RECORD lists %s, the archive has %s" % (sorted(recorded), sorted(names)))

        wheel = email.parser.Parser().parsestr(z.read(info_dir + "/WHEEL").decode("utf-8"))
        if wheel["Wheel-Version"] != "1.0":
            problems.append("Wheel-Version %r" % wheel["Wheel-Version"])
        if wheel["Root-Is-Purelib"] != "false":
            problems.append("Root-Is-Purelib %r (a binary wheel is platlib)" % wheel["Root-Is-Purelib"])
        tags = sorted(wheel.get_all("Tag") or [])
        want_tags = sorted("%s-%s-%s" % (py, abi, p) for p in platforms.split("."))
        if tags != want_tags:
            problems.append("WHEEL tags %s, the file name says %s" % (tags, want_tags))

        meta = email.parser.Parser().parsestr(z.read(info_dir + "/METADATA").decode("utf-8"))
        for key, want in [("Metadata-Version", "2.1"), ("Name", dist), ("Version", version)]:
            if meta[key] != want:
                problems.append("METADATA %s is %r, want %r" % (key, meta[key], want))
        if not meta["Summary"] or not meta.get_payload().strip():
            problems.append("METADATA has no summary or no description")

        info = z.getinfo(script)
        mode = info.external_attr >> 16
        if not stat.S_ISREG(mode) or stat.S_IMODE(mode) != 0o755:
            problems.append("%s has mode %o, want a regular file with 0755" % (script, mode))
        with open(binary_out, "wb") as f:
            f.write(z.read(script))
    return problems, {"python_tag": py, "abi_tag": abi, "platform_tags": platforms.split(".")}


def main():
    problems, tags = check(*sys.argv[1:4])
    result = {"problems": problems}
    result.update(tags or {})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
