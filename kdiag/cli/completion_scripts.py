"""The completion scripts ``kdiag completion SHELL`` prints. Each asks ``PROGRAM __complete
WORD... CURRENT`` (:mod:`kdiag.cli.completion`) and completes files itself when told to.

Install: bash ``source <(kdiag completion bash)`` (or save it in
``/etc/bash_completion.d/kdiag``); zsh ``kdiag completion zsh > "${fpath[1]}/_kdiag"``; fish
``kdiag completion fish > ~/.config/fish/completions/kdiag.fish``. ``kubectl kdiag`` completes
through kubectl (1.26+), which runs ``kubectl_complete-kdiag`` from the PATH: pip puts it there;
krew links only ``kubectl-kdiag`` (krew cannot install a second executable), so ``kdiag
completion kubectl`` prints one to save beside it.
"""

from __future__ import annotations

BASH = r"""# kdiag completion for bash: source <(kdiag completion bash)
_kdiag() {
  local cur="${COMP_WORDS[COMP_CWORD]}" IFS=$'\n' out kind
  out=($("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD-1}" "$cur" 2>/dev/null))
  kind="${out[0]}"
  case "$kind" in
    yaml)
      COMPREPLY=($(compgen -f -X '!*.yaml' -- "$cur") $(compgen -f -X '!*.yml' -- "$cur")
                 $(compgen -d -- "$cur"))
      compopt -o filenames 2>/dev/null ;;
    files) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null ;;
    dirs) COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null ;;
    *) COMPREPLY=("${out[@]:1}") ;;
  esac
}
complete -F _kdiag kdiag kubectl-kdiag
"""

ZSH = r"""#compdef kdiag kubectl-kdiag
# kdiag completion for zsh: kdiag completion zsh > "${fpath[1]}/_kdiag"
_kdiag() {
  local -a out
  out=("${(@f)$("${words[1]}" __complete "${(@)words[2,CURRENT-1]}" "${words[CURRENT]}" 2>/dev/null)}")
  case "${out[1]}" in
    yaml) _files -g '*.(yaml|yml)' ;;
    files) _files ;;
    dirs) _files -/ ;;
    *) (( ${#out} > 1 )) && compadd -- "${(@)out[2,-1]}" ;;
  esac
}
if [[ "${funcstack[1]}" == _kdiag ]]; then _kdiag "$@"; else compdef _kdiag kdiag kubectl-kdiag; fi
"""

FISH = r"""# kdiag completion for fish: kdiag completion fish > ~/.config/fish/completions/kdiag.fish
function __kdiag_complete
    set -l words (commandline -opc)
    set -l current (commandline -ct)
    set -l out ($words[1] __complete $words[2..-1] "$current" 2>/dev/null)
    switch "$out[1]"
        case yaml
            __fish_complete_path "$current" | string match -r -- '^[^\t]*(?:\.ya?ml|/)(?:\t.*)?$'
        case files
            __fish_complete_path "$current"
        case dirs
            __fish_complete_directories "$current"
        case '*'
            printf '%s\n' $out[2..-1]
    end
end
complete -c kdiag -f -a '(__kdiag_complete)'
complete -c kubectl-kdiag -f -a '(__kdiag_complete)'
"""

KUBECTL = r"""#!/bin/sh
# kubectl_complete-kdiag: kubectl (1.26+) runs it to complete `kubectl kdiag ...`. Where krew
# installed kdiag (it puts only kubectl-kdiag on the PATH), save it beside that:
#   kubectl kdiag completion kubectl > "${KREW_ROOT:-$HOME/.krew}/bin/kubectl_complete-kdiag"
#   chmod +x "${KREW_ROOT:-$HOME/.krew}/bin/kubectl_complete-kdiag"
exec kubectl-kdiag __complete_kubectl "$@"
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH, "kubectl": KUBECTL}


def script(shell: str) -> str:
    """The completion script for ``shell``."""
    return SCRIPTS[shell]
