"""Errors that the command line turns into one clear message and a non-zero exit."""


class MGRBError(Exception):
    """A problem the user can fix; its message says what and how. Exit status 2."""

    exit_code = 2


class ConfigError(MGRBError):
    """An experiment file that does not validate: names the file, the key and the line."""


class DataError(MGRBError):
    """A data set that is missing, incomplete or in an unexpected layout."""


class WordNetError(MGRBError):
    """The WordNet database cannot be found or lacks a synset."""


class RunFolderError(MGRBError):
    """A run folder that cannot be used (locked, unwritable, from another experiment)."""


class PeerLost(MGRBError):
    """A process of a run over several stopped because another one ended: that one's error is
    the one to read. Its own exit status, by which `mgrb run --nproc` tells (pipeline/workers.py)."""

    exit_code = 4
