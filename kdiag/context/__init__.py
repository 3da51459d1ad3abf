"""A target's context for a local command: its environment, its files and its cluster names.

``run: {argv: [...], from_target: {env, files, names}}`` and ``kdiag exec`` start a command on
this machine as the target's process would run: with the environment its main process was
started with (:mod:`.environment`), listed files and folders of its root copied read-only into
a private folder and shown at their original paths (:mod:`.files`, :mod:`.folder`), and
cluster Service names resolving to local forwards (:mod:`kdiag.connect`). Everything read is
secret unless listed as ``public`` (:mod:`.secrets`). :mod:`.spec` is the ``from_target``
mapping; :mod:`.context` puts it together.
"""
