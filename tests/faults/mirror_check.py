#!/usr/bin/env python3
"""The verifier of the fault tests: which bytes may sit under a final name (stdlib only).

    mirror_check.py record TREE HISTORY      add every file's sha-256 under TREE to HISTORY
    mirror_check.py check  DEST HISTORY      every file under a final name in DEST is a version
                                              HISTORY recorded for that path
    mirror_check.py equal  DEST TREE         DEST holds exactly TREE's files and bytes
    mirror_check.py listed URL TREE          the Resource List at URL lists exactly TREE's files
                                              with their sha-256 (URL's directory is TREE's root)

HISTORY is a JSON file {relative path: [sha-256, ...]}: every version the source ever had, so a
mirror that a kill caught between two versions still passes, while a torn, mixed or foreign
file does not. The client's own names (any path component starting with `.shardsync`) are
skipped, and so are the paths listed (space-separated) in $MIRROR_CHECK_SKIP, such as a
symlink the test planted itself. Hashes are cached by (inode, size, mtime, ctime) in HISTORY.cache (`equal` and
`listed`: in $MIRROR_CHECK_CACHE when set), so checking a multi-GiB mirror after every kill
only reads the files that changed. Exit 0 when the property holds, 1
with one line per offending path otherwise.
"""

import hashlib
import json
import os
import stat
import sys


SKIP = set(os.environ.get("MIRROR_CHECK_SKIP", "").split())


def own_name(rel):
    return any(part.startswith(".shardsync") for part in rel.split("/"))


def walk(tree):
    """Yields (relative path, lstat) of everything below TREE except the client's own names."""
    for dirpath, dirnames, filenames in os.walk(tree):
        rel_dir = os.path.relpath(dirpath, tree)
        dirnames[:] = [d for d in dirnames if not d.startswith(".shardsync")]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = name if rel_dir == "." else rel_dir + "/" + name
            if not own_name(rel) and rel not in SKIP:
                yield rel, os.lstat(os.path.join(dirpath, name))


class HashCache:
    def __init__(self, path):
        self.path = path  # None: in memory only
        self.known = load(path) if path else {}

    def sha256(self, full, st):
        # ctime too: the client sets mtime from <lastmod>, and inode numbers get reused.
        key = "%d:%d:%d:%d:%d" % (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                  st.st_ctime_ns)
        if key not in self.known:
            digest = hashlib.sha256()
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self.known[key] = digest.hexdigest()
        return self.known[key]

    def save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.known, f)
        os.replace(tmp, self.path)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def record(tree, history_path):
    history = load(history_path)
    cache = HashCache(history_path + ".cache")
    for rel, st in walk(tree):
        if stat.S_ISREG(st.st_mode):
            digest = cache.sha256(os.path.join(tree, rel), st)
            versions = history.setdefault(rel, [])
            if digest not in versions:
                versions.append(digest)
    cache.save()
    with open(history_path, "w") as f:
        json.dump(history, f)
    return 0


def check(dest, history_path):
    history = load(history_path)
    cache = HashCache(history_path + ".cache")
    bad = []
    count = 0
    for rel, st in walk(dest):
        if not stat.S_ISREG(st.st_mode):
            bad.append("not a regular file: " + rel)
            continue
        count += 1
        digest = cache.sha256(os.path.join(dest, rel), st)
        if digest not in history.get(rel, []):
            bad.append("bytes the source never had: %s (%d bytes, sha-256 %s)" %
                       (rel, st.st_size, digest))
    cache.save()
    for line in bad:
        print(line)
    print("checked %d files, %d bad" % (count, len(bad)), file=sys.stderr)
    return 1 if bad else 0


def equal(dest, tree):
    cache = HashCache(os.environ.get("MIRROR_CHECK_CACHE"))
    mine = {rel: st for rel, st in walk(dest)}
    theirs = {rel: st for rel, st in walk(tree)}
    bad = ["missing: " + rel for rel in sorted(theirs.keys() - mine.keys())]
    bad += ["extra: " + rel for rel in sorted(mine.keys() - theirs.keys())]
    for rel in sorted(mine.keys() & theirs.keys()):
        a, b = mine[rel], theirs[rel]
        if not (stat.S_ISREG(a.st_mode) and stat.S_ISREG(b.st_mode)):
            if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
                bad.append("type differs: " + rel)
        elif a.st_size != b.st_size or cache.sha256(os.path.join(dest, rel), a) != cache.sha256(
                os.path.join(tree, rel), b):
            bad.append("bytes differ: " + rel)
    cache.save()
    for line in bad:
        print(line)
    return 1 if bad else 0


def listed(url, tree):
    """The server's Resource List names every file of TREE with its current sha-256, and no
    other: its change log and the files agree."""
    import urllib.parse
    import urllib.request
    import xml.etree.ElementTree as ET
    base = url.rsplit("/", 1)[0].replace("/.resourcesync", "") + "/"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            root = ET.fromstring(response.read())
    except (OSError, ET.ParseError) as e:
        print("cannot read %s: %s" % (url, e))
        return 1
    ns = {"sm": "http://www.sitemaps.org/schemas/sitemap/0.9",
          "rs": "http://www.openarchives.org/rs/terms/"}
    served = {}
    for entry in root.findall("sm:url", ns):
        loc = entry.findtext("sm:loc", "", ns)
        md = entry.find("rs:md", ns)
        digest = (md.get("hash", "") if md is not None else "")
        sha = [h.split(":", 1)[1] for h in digest.split() if h.startswith("sha-256:")]
        served[urllib.parse.unquote(loc[len(base):])] = sha[0] if sha else ""
    cache = HashCache(os.environ.get("MIRROR_CHECK_CACHE"))
    on_disk = {rel: cache.sha256(os.path.join(tree, rel), st)
               for rel, st in walk(tree) if stat.S_ISREG(st.st_mode)}
    bad = ["listed but not on disk: " + rel for rel in sorted(served.keys() - on_disk.keys())]
    bad += ["on disk but not listed: " + rel for rel in sorted(on_disk.keys() - served.keys())]
    bad += ["listed with other bytes: " + rel for rel in sorted(served.keys() & on_disk.keys())
            if served[rel] != on_disk[rel]]
    cache.save()
    for line in bad:
        print(line)
    return 1 if bad else 0


def main(argv):
    commands = {"record": record, "check": check, "equal": equal, "listed": listed}
    if len(argv) != 4 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]](argv[2], argv[3])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
