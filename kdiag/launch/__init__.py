"""Starting a local command in a private view of this machine's files: chosen files and folders
shown, read-only, at paths of our choosing (a target's config at its original path, a hosts
file naming cluster Services), for that command alone and without changing anything anyone
else sees. :mod:`.view` decides how (a private mount namespace, as root or in a user namespace,
else no view at all: the caller remaps paths), :mod:`.launcher` starts the command, and
:mod:`.mountns` is the helper that makes the mounts in the command's own namespace.
"""
