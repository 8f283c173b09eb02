# bash completion for ztask, ztask-master and ztask-worker
# (installed by `make install` as PREFIX/share/bash-completion/completions/ztask,
# with links for the two daemons; or: source this file).
#
# The lists come from the programs themselves: the commands from
# `ztask --help` ("Commands:" section), each command's options from
# `ztask COMMAND --help`, the daemons' options from their --help. Nothing
# here talks to a master, and a new command or option completes without
# editing this file.

# The long options a program's help text lists (words starting with --).
_ztask_options()
{
    # Option lines only ("  -f, --follow   text", "  --dir DIR   text"):
    # the words before the description, not options named in prose.
    "$@" --help 2>/dev/null | awk '
        /^[ \t]+-/ {
            s = $0; sub(/^[ \t]+/, "", s)
            i = index(s, "  "); if (i) s = substr(s, 1, i - 1)
            n = split(s, a, /[ ,=[]+/)
            for (k = 1; k <= n; k++) if (a[k] ~ /^--[a-z]/) print a[k]
        }' | sort -u
}

# The commands `ztask --help` lists, one per line.
_ztask_commands()
{
    "$1" --help 2>/dev/null | awk '
        /^Commands:/ { on = 1; next }
        on && /^[^ ]/ { on = 0 }
        on && /^  [a-z]/ { print $1 }'
}

_ztask()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prog=${COMP_WORDS[0]}
    local i cmd="" word
    # The command: the first word after the program that is not an option
    # (nor the value of a global option that takes one).
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        case $word in
            --master|--request-timeout|--curve-secret|--master-key) ((i++)) ;;
            -*) ;;
            *) cmd=$word; break ;;
        esac
    done
    local prev=${COMP_WORDS[COMP_CWORD-1]}
    case $prev in
        --curve-secret|--master-key|--file|--each|--stdin|--cwd|--dir|--db|--plugin|--state-dir)
            COMPREPLY=($(compgen -f -- "$cur"))
            return 0 ;;
    esac
    if [ -z "$cmd" ]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$(_ztask_options "$prog")" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$(_ztask_commands "$prog") help" -- "$cur"))
        fi
        return 0
    fi
    if [ "$cmd" = help ]; then
        COMPREPLY=($(compgen -W "$(_ztask_commands "$prog")" -- "$cur"))
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_ztask_options "$prog" "$cmd")" -- "$cur"))
    fi
    return 0
}

_ztask_daemon()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    case $prev in
        --db|--curve-secret|--master-key|--clients|--workers|--admins|--plugin|--state-dir)
            COMPREPLY=($(compgen -f -- "$cur"))
            return 0 ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_ztask_options "${COMP_WORDS[0]}")" -- "$cur"))
    fi
    return 0
}

complete -F _ztask -o default ztask
complete -F _ztask_daemon -o default ztask-master ztask-worker
