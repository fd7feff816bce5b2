# Sourced by the resync interop tests: finds resync and a Python that runs it, or skips
# (exit 77). Needs: $work (a scratch directory), $repo, $python; defines $resync and py().
# resync comes from $SHARDSYNC_RESYNC (a source tree or a bare git repo), else ../resync
# beside this repository, else /work/.mirror/resync+resync/repo.

declare -F skip >/dev/null || skip() {
  echo "skipped: $*"
  exit 77
}

is_source_tree() { [ -f "$1/resync/__init__.py" ] && [ -f "$1/resync-build" ] && [ -f "$1/resync-sync" ]; }
is_git_repo() { command -v git >/dev/null && git --git-dir="$1" rev-parse -q --verify 'HEAD^{commit}' >/dev/null 2>&1; }

resync=
resync_origin=
use_candidate() {  # use_candidate DIR: a source tree is used in place, a git repo exported
  local dir=$1 gitdir=
  if is_source_tree "$dir"; then
    resync=$dir
  else
    if is_git_repo "$dir"; then
      gitdir=$dir
    elif is_git_repo "$dir/.git"; then
      gitdir=$dir/.git
    else
      return 1
    fi
    rm -rf "$work/resync" && mkdir -p "$work/resync"
    timeout 60 git --git-dir="$gitdir" archive HEAD | tar -x -C "$work/resync" || return 1
    is_source_tree "$work/resync" || return 1
    resync=$work/resync
  fi
  resync_origin=$dir
}
if [ -n "${SHARDSYNC_RESYNC:-}" ]; then
  # An explicit setting that does not work is a configuration error, not a skip.
  if ! use_candidate "$SHARDSYNC_RESYNC"; then
    echo "resync interop: SHARDSYNC_RESYNC=$SHARDSYNC_RESYNC is neither a resync source tree nor a git repository holding one" >&2
    exit 1
  fi
else
  for candidate in "$repo/../resync" /work/.mirror/resync+resync/repo; do
    [ -e "$candidate" ] && use_candidate "$candidate" && break
  done
  [ -n "$resync" ] || skip "resync not found beside the repository or in /work/.mirror (set SHARDSYNC_RESYNC to a resync source tree or git repository; exporting one needs git)"
fi

# resync's runtime dependencies; it also imports distutils (gone in Python 3.12).
timeout 20 "$python" -c 'import dateutil, defusedxml' 2>/dev/null ||
  skip "$python lacks dateutil or defusedxml (Debian: python3-dateutil python3-defusedxml)"
py() {  # py ARGS...: resync's Python, time-bounded, resync importable, no .pyc written
  PYTHONPATH="$resync${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 PYTHONWARNINGS=ignore \
    timeout 30 "$python" "$@"
}
import_error=$(py -c 'import resync.client' 2>&1) ||
  skip "resync from $resync_origin does not import under $python: $(echo "$import_error" | tail -1)"
resync_version=$(py -c 'import resync; print(resync.__version__)' 2>/dev/null)
echo "resync $resync_version from $resync_origin, $python"

