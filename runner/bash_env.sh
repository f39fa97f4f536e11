# Read by every non-interactive bash in the runner image (BASH_ENV), such as act's step shell
# `bash --noprofile --norc -eo pipefail`: a command the image lacks fails with one line naming
# it and how to add it, instead of a bare "command not found".
command_not_found_handle() {
    printf 'ciparity: %s: command not found in the runner image; hosted runners may have it:' "$1" >&2
    printf ' add its Debian package to runner_packages in [tool.ciparity]' >&2
    printf ' (or CIPARITY_RUNNER_PACKAGES), then invoke build-runner\n' >&2
    return 127
}
