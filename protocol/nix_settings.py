"""The names of Nix's settings, so that nix-eval-jobs' command line can take each one as a flag
(Nix's MixCommonArgs): a boolean setting as `--NAME` / `--no-NAME`, any other as `--NAME VALUE`
and `--extra-NAME VALUE`. Listed from Nix 2.26.3's `nix config show --json` (aliases
included); a setting this list lacks still works as `--option NAME VALUE`.
"""

from __future__ import annotations

BOOLEAN = frozenset("""
abort-on-warn accept-flake-config allow-dirty allow-dirty-locks allow-import-from-derivation
allow-new-privileges allow-symlinked-store allow-unsafe-native-code-during-evaluation
always-allow-substitutes auto-allocate-uids auto-optimise-store build-compress-log
build-fallback build-impersonate-linux-26 build-keep-log build-use-chroot build-use-sandbox
build-use-substitutes builders-use-substitutes compress-build-log debugger-on-trace
debugger-on-warn env-keep-derivations eval-cache fallback filter-syscalls fsync-metadata
fsync-store-paths gc-keep-derivations gc-keep-outputs http2 ignore-try impersonate-linux-26
keep-build-log keep-derivations keep-env-derivations keep-failed keep-going keep-outputs
nix-shell-always-looks-for-shell-nix nix-shell-shebang-arguments-relative-to-script
preallocate-contents print-missing pure-eval require-drop-supplementary-groups require-sigs
restrict-eval run-diff-hook sandbox sandbox-fallback show-trace substitute
sync-before-registering trace-function-calls trace-verbose trust-tarballs-from-git-forges
use-case-hack use-cgroups use-registries use-sqlite-wal use-xdg-base-directories warn-dirty
""".split())

VALUED = frozenset("""
access-tokens allowed-impure-host-deps allowed-uris allowed-users bash-prompt bash-prompt-prefix
bash-prompt-suffix binary-cache-public-keys binary-caches binary-caches-parallel-connections
build-chroot-dirs build-cores build-dir build-hook build-max-jobs build-max-log-size
build-max-silent-time build-poll-interval build-sandbox-paths build-timeout build-users-group
builders commit-lock-file-summary commit-lockfile-summary connect-timeout cores diff-hook
download-attempts download-buffer-size download-speed eval-system experimental-features
extra-platforms flake-registry gc-reserved-space hashed-mirrors http-connections id-count
ignored-acls impure-env log-lines max-build-log-size max-call-depth max-free max-jobs
max-silent-time max-substitution-jobs min-free min-free-check-interval nar-buffer-size
narinfo-cache-negative-ttl narinfo-cache-positive-ttl netrc-file nix-path plugin-files
post-build-hook pre-build-hook sandbox-build-dir sandbox-dev-shm-size sandbox-paths
secret-key-files ssl-cert-file stalled-download-timeout start-id store substituters
substitution-max-jobs system system-features tarball-ttl timeout trusted-binary-caches
trusted-public-keys trusted-substituters trusted-users upgrade-nix-store-path-url
user-agent-suffix warn-large-path-threshold
""".split())
