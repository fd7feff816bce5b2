#!/usr/bin/env python3
"""Change-history model test (RELIABILITY.md F11, F12, M1-M3): random histories of creates,
updates, deletes, renames and clock steps on a directory that a real `shardsync serve`
publishes, with `shardsync sync --delete` (incremental) at random points; after every sync the
mirror must equal the source's state at that point, as a model kept by this test says.

    history_model.py SHARDSYNC [HISTORIES [STEPS [SEED]]]

The server runs under libfaketime (Debian faketime) with its wall clock read from a file the
test rewrites, so the clock steps back and forth while it logs changes (monotonic clocks stay
real, so timers work). Each sync runs under its own random clock offset too. Seeded and
reproducible: a failure prints the seed and the history so far. Exit 0 when every sync point
of every history matched the model.
"""

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
HERE = os.path.dirname(os.path.realpath(__file__))
CLOCK_STEPS = ["+0", "-1h", "-2d", "+1h", "+3d", "-400d", "+10y", "+0"]
CLIENT_OFFSETS = ["+0", "-1d", "+1d", "+10y"]


def faked_env(clock_file=None, offset=None):
    env = dict(os.environ)
    env["LD_PRELOAD"] = FAKETIME_LIB
    env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    # Only the clock steps: file times stay the kernel's, as after a real clock step (faked
    # stat() results would also disagree between the stat calls libfaketime wraps and not).
    env["NO_FAKE_STAT"] = "1"
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    if clock_file:
        env["FAKETIME_TIMESTAMP_FILE"] = clock_file
        env["FAKETIME_NO_CACHE"] = "1"
        env.pop("FAKETIME", None)
    else:
        env["FAKETIME"] = offset
    return env


class History:
    def __init__(self, binary, work, rng, log):
        self.binary, self.work, self.rng, self.log = binary, work, rng, log
        self.src = os.path.join(work, "src")
        self.dest = os.path.join(work, "mirror")
        self.clock = os.path.join(work, "clock")
        self.model = {}  # relative path -> bytes: what the source holds
        self.serial = 0
        os.makedirs(self.src)
        with open(self.clock, "w") as f:
            f.write("+0\n")

    # --- the source and its model
    def new_path(self):
        self.serial += 1
        folder = self.rng.choice(["", "a/", "a/b/", "c/"])
        return "%sf%d.bin" % (folder, self.serial)

    def content(self):
        size = self.rng.choice([0, 1, 100, 4096, 70000, 300000])
        return self.rng.randbytes(size)

    def write(self, rel, data, atomic):
        full = os.path.join(self.src, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if atomic:
            tmp = os.path.join(self.work, "staging")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, full)
        else:
            with open(full, "wb") as f:
                f.write(data)
        self.model[rel] = data

    def step(self):
        kinds = ["create"] * 3 + (["update"] * 3 + ["delete", "rename"] if self.model else [])
        kind = self.rng.choice(kinds + ["clock"])
        if kind == "create":
            rel = self.new_path()
            self.write(rel, self.content(), self.rng.random() < 0.5)
            return "create %s (%d B)" % (rel, len(self.model[rel]))
        if kind == "update":
            rel = self.rng.choice(sorted(self.model))
            self.write(rel, self.content(), self.rng.random() < 0.5)
            return "update %s (%d B)" % (rel, len(self.model[rel]))
        if kind == "delete":
            rel = self.rng.choice(sorted(self.model))
            os.unlink(os.path.join(self.src, rel))
            del self.model[rel]
            return "delete " + rel
        if kind == "rename":
            old = self.rng.choice(sorted(self.model))
            # onto a new name, or over another file
            new = self.rng.choice(sorted(self.model)) if self.rng.random() < 0.3 else self.new_path()
            if new == old:
                return "rename %s onto itself (nothing)" % old
            os.makedirs(os.path.dirname(os.path.join(self.src, new)), exist_ok=True)
            os.replace(os.path.join(self.src, old), os.path.join(self.src, new))
            self.model[new] = self.model.pop(old)
            return "rename %s -> %s" % (old, new)
        offset = self.rng.choice(CLOCK_STEPS)
        with open(self.clock, "w") as f:
            f.write(offset + "\n")
        return "server clock " + offset

    # --- the server
    def start(self):
        port_file = os.path.join(self.work, "port")
        self.server_log = open(os.path.join(self.work, "server.log"), "ab")
        self.server = subprocess.Popen(
            [self.binary, "serve", "--collection", "ckpt=" + self.src, "--listen", "127.0.0.1:0",
             "--port-file", port_file, "--state-dir", os.path.join(self.work, "state"),
             "--rescan-interval", "1"], stdout=self.server_log, stderr=self.server_log,
            env=faked_env(clock_file=self.clock))
        for _ in range(300):
            if os.path.exists(port_file) and open(port_file).read().strip():
                self.base = "http://127.0.0.1:%s" % open(port_file).read().strip()
                return
            time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self):
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()

    def served_as_model(self):
        """The Resource List names the model's files with their sha-256 (the server caught up)."""
        want = {rel: hashlib.sha256(data).hexdigest() for rel, data in self.model.items()}
        for _ in range(150):
            result = subprocess.run(
                [sys.executable, os.path.join(HERE, "mirror_check.py"), "listed",
                 self.base + "/ckpt/.resourcesync/resourcelist.xml", self.src],
                capture_output=True, text=True)
            on_disk = {rel: hashlib.sha256(open(os.path.join(self.src, rel), "rb").read())
                       .hexdigest() for rel in self.model}
            if result.returncode == 0 and on_disk == want:
                return True
            time.sleep(0.1)
        self.log.append("server never caught up: " + result.stdout.strip()[:300])
        return False

    # --- the mirror
    def sync_point(self):
        offset = self.rng.choice(CLIENT_OFFSETS)
        result = subprocess.run(
            [self.binary, "sync", self.base + "/", self.dest, "--collection", "ckpt", "--delete",
             "--max-delete", "1000000", "-q"], capture_output=True, text=True,
            env=faked_env(offset=offset))
        self.log.append("sync (client clock %s): exit %d %s" %
                        (offset, result.returncode, result.stderr.strip()[-300:]))
        if result.returncode != 0:
            return False
        mirror = {}
        for dirpath, dirnames, filenames in os.walk(self.dest):
            dirnames[:] = [d for d in dirnames if not d.startswith(".shardsync")]
            for name in filenames:
                if name.startswith(".shardsync"):
                    continue
                full = os.path.join(dirpath, name)
                mirror[os.path.relpath(full, self.dest)] = open(full, "rb").read()
        if mirror == self.model:
            return True
        for rel in sorted(set(mirror) | set(self.model)):
            if rel not in mirror:
                self.log.append("  missing in the mirror: " + rel)
            elif rel not in self.model:
                self.log.append("  extra in the mirror: " + rel)
            elif mirror[rel] != self.model[rel]:
                self.log.append("  other bytes in the mirror: %s (%d vs %d B)" %
                                (rel, len(mirror[rel]), len(self.model[rel])))
        return False


def run_history(binary, seed, steps):
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="history_model.")
    log = []
    h = History(binary, work, rng, log)
    syncs = 0
    try:
        for _ in range(rng.randint(0, 4)):  # some files before the server starts
            log.append(h.step())
        h.start()
        for i in range(steps):
            log.append(h.step())
            if rng.random() < 0.35 or i == steps - 1:
                if not h.served_as_model():
                    return False, syncs, log
                syncs += 1
                if not h.sync_point():
                    return False, syncs, log
        return True, syncs, log
    finally:
        h.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv):
    binary = os.path.realpath(argv[1])
    histories = int(argv[2]) if len(argv) > 2 else 3
    steps = int(argv[3]) if len(argv) > 3 else 12
    seed = int(argv[4]) if len(argv) > 4 else random.randrange(1 << 30)
    if not os.path.exists(FAKETIME_LIB):
        print("SKIP: libfaketime (Debian faketime) is not installed")
        return 77
    passed = syncs = 0
    for n in range(histories):
        ok, count, log = run_history(binary, seed + n, steps)
        syncs += count
        if ok:
            passed += 1
        else:
            print("FAIL: history %d (seed %d; rerun: %s %s 1 %d %d):" %
                  (n, seed + n, argv[0], argv[1], steps, seed + n))
            for line in log:
                print("  " + line)
    print("history_model: %d/%d histories converged at all %d sync points (%d steps each, "
          "seed %d)" % (passed, histories, syncs, steps, seed))
    return 0 if passed == histories else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
