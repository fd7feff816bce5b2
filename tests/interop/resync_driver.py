"""Drives the resync reference implementation (resync/resync 2.x) through its public
Python API for resync_documents_test.sh. This file is ours; resync itself is never
copied into the repository: the test puts a resync source tree on PYTHONPATH.

Subcommands (each prints one `PASS: ...` or `FAIL: ...` line per check and exits 1 if
any check failed, 2 on usage errors):

  dump TREE BASE_URI OUTDIR DOCS_URI CAPLIST_URI
      Write a Resource Dump of TREE (mapped to BASE_URI) with resync's Dump class:
      OUTDIR/resourcedump00000.zip plus resync's separate manifest copy
      OUTDIR/resourcedump00000.xml; extract manifest.xml from the ZIP to
      OUTDIR/manifest.xml; write a Resource Dump document OUTDIR/resourcedump.xml that
      lists the ZIP (served under DOCS_URI) and links up to CAPLIST_URI.
  resourcelist URI TREE BASE_URI CAPLIST_URI [PARTS]
      Read a Resource List (PARTS > 0: a sitemapindex with that many parts) and compare
      every entry with the file it names under TREE: URI set, length, md5, sha-256,
      lastmod against the file's mtime, type present, up link.
  capabilitylist URI RESOURCELIST_URI DESCRIPTION_URI
      Read a Capability List: exactly one capability, resourcelist -> RESOURCELIST_URI,
      and rel="up" -> DESCRIPTION_URI.
  description URI CAPLIST_URI
      Read a Source Description: exactly one entry, CAPLIST_URI, capability
      capabilitylist.
"""

import hashlib
import os
import re
import sys
import time
import urllib.parse
import zipfile

from resync.capability_list import CapabilityList
from resync.dump import Dump
from resync.mapper import Mapper
from resync.resource import Resource
from resync.resource_dump import ResourceDump
from resync.resource_dump_manifest import ResourceDumpManifest
from resync.resource_list import ResourceList
from resync.resource_list_builder import ResourceListBuilder
from resync.source_description import SourceDescription
from resync.w3c_datetime import datetime_to_str

failures = 0

# A URI path: unreserved, sub-delims, ':', '@', '/' and %XX escapes (RFC 3986 §3.3).
URI_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")


def check(ok, what, detail=""):
    global failures
    if ok:
        print("PASS: " + what)
    else:
        failures += 1
        print("FAIL: " + what + (": " + detail if detail else ""))


def file_digest(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def tree_files(tree):
    """Relative POSIX paths of the regular files under tree."""
    files = []
    for root, _, names in os.walk(tree):
        for name in names:
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                files.append(os.path.relpath(full, tree).replace(os.sep, "/"))
    return sorted(files)


def cmd_dump(tree, base_uri, outdir, docs_uri, caplist_uri):
    mapper = Mapper([base_uri + "=" + tree])
    builder = ResourceListBuilder(set_hashes=["md5", "sha-256"], mapper=mapper)
    builder.set_path = True  # Dump needs each resource's local path
    resources = builder.from_disk()
    count = Dump(resources=resources).write(basename=os.path.join(outdir, "resourcedump"))
    check(count == 1, "resync wrote one dump package", "wrote %d" % count)
    package = os.path.join(outdir, "resourcedump00000.zip")
    with zipfile.ZipFile(package) as zf:
        names = zf.namelist()
        check("manifest.xml" in names, "the package holds manifest.xml", repr(names))
        with open(os.path.join(outdir, "manifest.xml"), "wb") as f:
            f.write(zf.read("manifest.xml"))
        expected = tree_files(tree)
        stored = sorted(n for n in names if n != "manifest.xml")
        check(stored == expected, "the package holds every file of the tree",
              "%r != %r" % (stored, expected))
        manifest = ResourceDumpManifest()
        manifest.parse(str_data=zf.read("manifest.xml").decode("utf-8"))
        paths = sorted(r.path for r in manifest)
        check(paths == stored, "the package's manifest paths name its members",
              "%r != %r" % (paths, stored))

    now = datetime_to_str(time.time())
    dump = ResourceDump()
    dump.up = caplist_uri
    dump.md_at = now
    entry = Resource(uri=docs_uri + "resourcedump00000.zip",
                     length=os.path.getsize(package),
                     mime_type="application/zip",
                     sha256=file_digest(package, "sha256"),
                     lastmod=now)
    entry.link_set("contents", docs_uri + "resourcedump00000.xml", type="application/xml")
    dump.add(entry)
    dump.write(basename=os.path.join(outdir, "resourcedump.xml"))


def cmd_resourcelist(uri, tree, base_uri, caplist_uri, parts):
    what = "resync reads %s" % uri.rsplit("/", 1)[-1]
    if parts:
        index = ResourceList()
        index.read(uri=uri, index_only=True)
        check(index.sitemapindex, what + " as a sitemapindex")
        check(len(index.resources) == parts, what + ": %d parts listed" % parts,
              "got %d" % len(index.resources))
        check(index.up == caplist_uri, what + ": index links up to the capability list",
              repr(index.up))
    rl = ResourceList()
    rl.read(uri=uri)
    check(rl.num_files == 1 + parts, what + ": %d document(s) fetched" % (1 + parts),
          "got %d" % rl.num_files)
    check(rl.capability == "resourcelist", what + ": capability resourcelist", repr(rl.capability))
    check(rl.up == caplist_uri, what + ": rel=up to the capability list", repr(rl.up))
    check(rl.md_at is not None, what + ": at present")

    # Each <loc> must be a URI (RFC 3986 characters, %XX escapes) under base_uri that
    # percent-decodes to a file's relative path; how much it escapes is the writer's choice.
    expected = tree_files(tree)
    got = {}
    bad_uris = []
    for r in rl:
        suffix = r.uri[len(base_uri):] if r.uri.startswith(base_uri) else None
        if suffix is None or not URI_PATH.fullmatch(suffix):
            bad_uris.append(r.uri)
        else:
            got[urllib.parse.unquote(suffix)] = r
    check(not bad_uris, what + ": every <loc> is a URI under " + base_uri, repr(bad_uris))
    check(sorted(got) == expected, what + ": %d URIs, one per file" % len(expected),
          "got %r, expected %r" % (sorted(got), expected))
    bad = []
    for rel in expected:
        r = got.get(rel)
        if r is None:
            continue
        path = os.path.join(tree, rel)
        if r.length != os.path.getsize(path):
            bad.append("%s length %r" % (rel, r.length))
        if r.md5 != file_digest(path, "md5"):
            bad.append("%s md5 %r" % (rel, r.md5))
        if r.sha256 != file_digest(path, "sha256"):
            bad.append("%s sha-256 %r" % (rel, r.sha256))
        if r.timestamp is None or abs(r.timestamp - os.stat(path).st_mtime) > 0.001:
            bad.append("%s lastmod %r" % (rel, r.lastmod))
        if not r.mime_type:
            bad.append("%s has no type" % rel)
    check(not bad, what + ": length, md5, sha-256, lastmod and type match the files",
          "; ".join(bad))


def cmd_capabilitylist(uri, resourcelist_uri, description_uri):
    what = "resync reads %s" % uri.rsplit("/", 1)[-1]
    cl = CapabilityList()
    cl.read(uri=uri)
    caps = {r.capability: r.uri for r in cl}
    check(caps == {"resourcelist": resourcelist_uri},
          what + ": one capability, resourcelist", repr(caps))
    check(cl.has_capability("resourcelist"), what + ": has_capability(resourcelist)")
    check(cl.up == description_uri, what + ": rel=up to the source description", repr(cl.up))


def cmd_description(uri, caplist_uri):
    what = "resync reads %s" % uri.rsplit("/", 1)[-1]
    sd = SourceDescription()
    sd.read(uri=uri)
    check(sd.capability == "description", what + ": capability description",
          repr(sd.capability))
    entries = [(r.uri, r.capability) for r in sd]
    check(entries == [(caplist_uri, "capabilitylist")],
          what + ": one capability list entry", repr(entries))


def main(argv):
    commands = {
        "dump": (cmd_dump, 5),
        "resourcelist": (cmd_resourcelist, 4),
        "capabilitylist": (cmd_capabilitylist, 3),
        "description": (cmd_description, 2),
    }
    if len(argv) < 2 or argv[1] not in commands:
        print("usage: resync_driver.py dump|resourcelist|capabilitylist|description ARGS...",
              file=sys.stderr)
        return 2
    function, nargs = commands[argv[1]]
    args = argv[2:]
    if argv[1] == "resourcelist" and len(args) == nargs:
        args.append("0")
    if argv[1] == "resourcelist" and len(args) == nargs + 1:
        args[-1] = int(args[-1])
    elif len(args) != nargs:
        print("resync_driver.py %s: expected %d arguments" % (argv[1], nargs), file=sys.stderr)
        return 2
    try:
        function(*args)
    except Exception as e:  # resync raises many types; any of them fails this check
        check(False, "resync %s %s" % (argv[1], args[0]), "%s: %s" % (type(e).__name__, e))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
