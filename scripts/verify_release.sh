#!/usr/bin/env bash
# Checks a downloaded MGRB release (made by `make dist`) and unpacks it:
#   0. SHA256SUMS itself against --expect-sha256, the sha256 published beside the release's DOI:
#      it vouches for the rest. Without it nothing outside the download does (said, not refused);
#   1. every file that SHA256SUMS lists (plain files of this folder only) against it;
#   2. the source archive: every member a plain file or folder under mgrb-artifact-VERSION/
#      (no link, device, FIFO, absolute or '..' path, setuid/setgid/sticky bit) before anything
#      is unpacked; its version and commit against the release's; then unpacked into
#      DIR/mgrb-artifact-VERSION, with this user's owner and umask;
#   3. the image, where the release has one and a Docker daemon answers: docker load, then the
#      loaded image's id against IMAGE_ID. Without a daemon this part is skipped, saying so.
#
# Usage: bash verify_release.sh [RELEASE_DIR] [--unpack-to DIR] [--expect-sha256 DIGEST]
#   RELEASE_DIR: the folder of the downloaded files (default: this script's folder)
#   DIR: where the source goes (default: the current folder)
#   DIGEST: the published sha256 of SHA256SUMS
# Run a copy of this script that did not come with the download (a clone's scripts/): a
# tampered download brings its own. Needs python3 (3.6 or later) and nothing else.
# Exit 0 when everything present checks out, 1 when something does not match, 2 on bad usage.
set -euo pipefail
command -v python3 >/dev/null || { echo "verify: error: no python3 here: it is needed" >&2; exit 2; }
# -I: neither this folder, nor the release folder, nor PYTHON* variables reach sys.path.
exec python3 -I - "$0" "$@" <<'PYTHON'
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zlib

SCRIPT = sys.argv[1]
SUMS_MAX = 1 << 20  # SHA256SUMS, RELEASE.json, IMAGE_ID, pyproject.toml, SOURCE_COMMIT: small
SUM_LINE = re.compile(r"([0-9a-f]{64}) [ *]([A-Za-z0-9._+-]+)\Z")
COMMIT = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")  # what git rev-parse prints (SHA-1 or SHA-256)


class Mismatch(Exception):
    pass


def say(text):
    print("verify: " + text, flush=True)


def usage(text):
    sys.stdout.flush()
    sys.stderr.write("verify: error: %s\n" % text)
    sys.exit(2)


def shown(text):
    """A name as it may be printed: control characters written out."""
    return "".join(c if c.isprintable() else "\\x%02x" % ord(c) if ord(c) < 256 else "\\u%04x" % ord(c)
                   for c in text)


def kind(mode):
    for test, word in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"


def open_regular(name):
    """A plain file of the current folder, opened without following a link or blocking on a FIFO
    or device (OSError otherwise, its strerror saying what it is)."""
    before = os.lstat(name)
    if not stat.S_ISREG(before.st_mode):
        raise OSError(errno.EINVAL, kind(before.st_mode) + ", not a regular file")
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise OSError(errno.EINVAL, "changed while it was opened")
    return os.fdopen(fd, "rb")


def read_small(name):
    with open_regular(name) as handle:
        data = handle.read(SUMS_MAX + 1)
    if len(data) > SUMS_MAX:
        raise OSError(errno.EFBIG, "over %d bytes" % SUMS_MAX)
    return data


def sha256_of(name):
    digest = hashlib.sha256()
    with open_regular(name) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main():
    args = sys.argv[2:]
    release, unpack_to, expect = os.path.dirname(SCRIPT) or ".", ".", None
    while args:
        arg = args.pop(0)
        if arg in ("--unpack-to", "--expect-sha256") or arg.startswith(("--unpack-to=", "--expect-sha256=")):
            option, _, value = arg.partition("=")
            if not _:
                if not args:
                    usage("%s needs a value" % option)
                value = args.pop(0)
            if option == "--unpack-to":
                unpack_to = value
            else:
                expect = value.lower()
                if expect.startswith("sha256:"):
                    expect = expect[len("sha256:"):]
                if not re.match(r"[0-9a-f]{64}\Z", expect):
                    usage("--expect-sha256 %s: not a sha256 (64 hexadecimal digits)" % shown(value))
        elif arg in ("-h", "--help"):
            with open(SCRIPT) as handle:
                lines = handle.read().splitlines()[1:]
            for line in lines:
                if not line.startswith("#"):
                    break
                print(re.sub(r"^# ?", "", line))
            sys.exit(0)
        elif arg.startswith("-"):
            usage("unknown option " + shown(arg))
        else:
            release = arg
    try:
        os.makedirs(unpack_to, exist_ok=True)
        unpack_to = os.path.abspath(unpack_to)
    except OSError:
        usage("cannot make the folder " + shown(unpack_to))
    try:
        os.chdir(release)
    except OSError:
        usage(shown(release) + ": no such folder")
    if not os.path.lexists("SHA256SUMS"):
        usage(shown(release) + ": no SHA256SUMS here; not a release folder")
    try:
        listed = check_sums(expect)
        record = check_source(listed, unpack_to)
        check_image(listed, record)
    except Mismatch as error:
        sys.stdout.flush()
        sys.stderr.write("verify: MISMATCH: %s\n" % error)
        sys.exit(1)
    say("the release checks out")


def check_sums(expect):
    try:
        sums = read_small("SHA256SUMS")
    except OSError as error:
        raise Mismatch("SHA256SUMS: %s" % error.strerror)
    own = hashlib.sha256(sums).hexdigest()
    if expect is not None and own != expect:
        raise Mismatch("SHA256SUMS has sha256 %s, not the published %s: this download is not the release "
                       "(or the digest is another release's); nothing was checked or unpacked" % (own, expect))
    if expect is not None:
        say("SHA256SUMS has sha256 %s, the published one: it vouches for the files it lists" % own)
    else:
        say("warning: SHA256SUMS has sha256 %s and nothing outside this download vouches for it: pass the "
            "sha256 published beside the release's DOI as --expect-sha256 DIGEST" % own)
    lines = sums.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the last line's newline; a last line without one is checked all the same
    listed = {}
    for line in lines:
        text = line.decode("utf-8", "replace")
        match = SUM_LINE.match(text)
        if not match or match.group(2) in (".", ".."):
            name = text.split(None, 1)[1] if len(text.split(None, 1)) == 2 else text
            raise Mismatch("SHA256SUMS: the line for '%s' is not 'sha256  file-name' (a plain file "
                           "name of this folder)" % shown(name.lstrip("*")))
        if match.group(2) in listed:
            raise Mismatch("SHA256SUMS: %s is listed twice" % match.group(2))
        listed[match.group(2)] = match.group(1)
    if not listed:
        raise Mismatch("SHA256SUMS lists no file")
    failed = []
    for name, want in listed.items():
        try:
            got = sha256_of(name)
        except OSError as error:
            failed.append("%s: FAILED open or read (%s)" % (name, error.strerror))
            continue
        if got != want:
            failed.append("%s: FAILED" % name)
    if failed:
        sys.stdout.flush()
        sys.stderr.write("".join("  %s\n" % line for line in failed))
        raise Mismatch("the files above differ from SHA256SUMS: changed or damaged in transit; download them again")
    say("checksums: all %d files match" % len(listed))
    for name in sorted(os.listdir(".")):
        if name != "SHA256SUMS" and name not in listed and stat.S_ISREG(os.lstat(name).st_mode):
            say("note: %s is not in SHA256SUMS; nothing vouches for it (ignored)" % shown(name))
    return listed


def member_problem(member, top):
    """Why a member of the source archive may not be unpacked, or None."""
    name = member.name
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a control character in its name"
    if name.startswith("/"):
        return "an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "a '..' in its path"
    if "" in parts or "." in parts:
        return "an empty or '.' part in its path"
    if parts[0] != top:
        return "outside %s/" % top
    if member.issym():
        return "a symbolic link (to %s): a release's archive holds none" % shown(member.linkname)
    if member.islnk():
        return "a hard link (to %s): a release's archive holds none" % shown(member.linkname)
    if member.ischr() or member.isblk():
        return "a device node"
    if member.isfifo():
        return "a FIFO"
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        return "of tar type %r, neither a plain file nor a folder" % member.type
    if name == top and not member.isdir():
        return "not a folder"
    bits = [word for bit, word in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"), (stat.S_ISVTX, "sticky"))
            if member.mode & bit]
    if bits:
        return "the %s bit set (mode %o)" % ("/".join(bits), member.mode)
    return None


def check_source(listed, into):
    archives = sorted(name for name in listed if name.endswith("-source.tar.gz"))
    if len(archives) != 1:
        raise Mismatch("expected one *-source.tar.gz in SHA256SUMS, found: %s" % (" ".join(archives) or "none"))
    archive = archives[0]
    top = archive[:-len("-source.tar.gz")]
    version = top[len("mgrb-artifact-"):] if top.startswith("mgrb-artifact-") else top
    try:
        handle = open_regular(archive)
    except OSError as error:
        raise Mismatch("%s: %s" % (archive, error.strerror))
    try:
        with handle, tarfile.open(fileobj=handle, mode="r:gz") as tar:
            # Every member is checked before anything is written.
            members, kinds = [], {}
            for member in tar:
                problem = member_problem(member, top)
                if problem is None and member.name in kinds:
                    problem = "in the archive twice"
                if problem:
                    raise Mismatch("%s: member %s: %s; nothing was unpacked" % (archive, shown(member.name), problem))
                members.append(member)
                kinds[member.name] = member.isdir()
            for member in members:
                parts = member.name.split("/")
                for end in range(1, len(parts)):
                    if kinds.get("/".join(parts[:end])) is False:
                        raise Mismatch("%s: member %s: lies under %s, which is a file; nothing was unpacked"
                                       % (archive, shown(member.name), "/".join(parts[:end])))
            found = member_text(tar, members, top + "/pyproject.toml", archive)
            found = "\n".join(re.findall(r'^version = "(.*)"$', found or "", re.M))
            if found != version:
                raise Mismatch("%s: its pyproject.toml says version '%s', its name %s" % (archive, shown(found), version))
            commit = member_text(tar, members, top + "/SOURCE_COMMIT", archive)
            if commit is not None:
                commit = commit[:-1] if commit.endswith("\n") else commit
                if not COMMIT.match(commit):
                    raise Mismatch("%s: its SOURCE_COMMIT holds '%s', not a commit id" % (archive, shown(commit)))
            record = read_record(listed)
            if record is not None and (record.get("commit") != commit or record.get("version") != version):
                raise Mismatch("%s is version %s, commit '%s'; RELEASE.json names version '%s', commit '%s'"
                               % (archive, version, commit or "none", shown(str(record.get("version"))),
                                  shown(str(record.get("commit")))))
            if os.path.lexists(os.path.join(into, top)):
                usage("%s exists already: remove it, or choose another folder with --unpack-to"
                      % shown(os.path.join(into, top)))
            unpack(tar, members, into, top, archive)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise Mismatch("%s: not a readable .tar.gz (%s); nothing was unpacked" % (archive, error))
    say("source: %s (version %s, commit %s) unpacked into %s"
        % (top, version, commit or "not recorded", shown(os.path.join(into, top))))
    return record


def member_text(tar, members, name, archive):
    for member in members:
        if member.name == name and not member.isdir():
            if member.size > SUMS_MAX:
                raise Mismatch("%s: %s is over %d bytes" % (archive, name, SUMS_MAX))
            return tar.extractfile(member).read().decode("utf-8", "replace")
    return None


def read_record(listed):
    if "RELEASE.json" not in listed:
        return None
    try:
        record = json.loads(read_small("RELEASE.json").decode("utf-8"))
    except (OSError, ValueError) as error:
        raise Mismatch("RELEASE.json: not readable JSON (%s)" % error)
    if not isinstance(record, dict):
        raise Mismatch("RELEASE.json: not a JSON object")
    return record


def unpack(tar, members, into, top, archive):
    """Folders and plain files only (checked above), into a folder of its own first: a failure
    leaves nothing behind. Modes: rwx or rw for this user, the umask for the others."""
    work = tempfile.mkdtemp(prefix=".%s.partial-" % top, dir=into)
    try:
        os.mkdir(os.path.join(work, top), 0o755)
        for member in members:
            path = os.path.join(work, member.name)
            if member.isdir():
                if member.name != top:
                    os.makedirs(path, 0o755, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
            mode = 0o755 if member.mode & 0o100 else 0o644
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(tar.extractfile(member), out, 1 << 20)
            os.utime(path, (member.mtime, member.mtime))
        os.rename(os.path.join(work, top), os.path.join(into, top))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_image(listed, record):
    if "IMAGE_ID" not in listed:
        image = record.get("image") if record else None
        why = image.get("skipped") if isinstance(image, dict) else None
        say("image: none in this release%s" % (" (when it was made: %s)" % shown(str(why)) if why else ""))
        return
    try:
        fields = read_small("IMAGE_ID").decode("utf-8", "replace").split()
    except OSError as error:
        raise Mismatch("IMAGE_ID: %s" % error.strerror)
    if len(fields) != 2 or not re.match(r"sha256:[0-9a-f]{64}\Z", fields[0]) \
            or not re.match(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*\Z", fields[1]):
        raise Mismatch("IMAGE_ID is not 'sha256:ID REFERENCE'")
    want, ref = fields
    images = sorted(name for name in listed if name.endswith("-image.tar.gz"))
    if len(images) != 1:
        raise Mismatch("IMAGE_ID names an image, but SHA256SUMS lists no single *-image.tar.gz")
    later = "later: docker load -i %s, then its id must be %s" % (images[0], want)
    if shutil.which("docker") is None:
        say("image: not loaded (no docker command here); " + later)
        return
    try:
        answered = subprocess.run(["docker", "version"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        answered = False
    if not answered:
        say("image: not loaded (no Docker daemon answers); " + later)
        return
    say("image: docker load -i %s (minutes for a few GB)" % images[0])
    load = subprocess.Popen(["docker", "load", "-i", images[0]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            universal_newlines=True)
    for line in load.stdout:
        print("  " + line.rstrip("\n"), flush=True)
    if load.wait():
        raise Mismatch("docker load -i %s failed (above)" % images[0])
    inspect = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    if inspect.returncode:
        raise Mismatch("after docker load there is no image %s" % ref)
    got = inspect.stdout.strip()
    if got != want:
        raise Mismatch("the loaded image %s has id %s; IMAGE_ID says %s" % (ref, shown(got), want))
    say("image: %s loaded, id %s as recorded" % (ref, got))


main()
PYTHON
