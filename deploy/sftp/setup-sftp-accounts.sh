#!/usr/bin/env bash
# setup-sftp-accounts.sh - accounts and chroot tree of the KBI transfer server (see README.md).
#
# Usage (as root):
#   setup-sftp-accounts.sh [options] [NIS ...]
#   setup-sftp-accounts.sh --registry /path/to/recipients.yaml --staging
#   setup-sftp-accounts.sh 11002 44021 --key m11002=/tmp/m11002.pub --key agii=/tmp/agii.pub
#
# Options:
#   --registry FILE      add every nis_code of the recipients registry (YAML list of entries)
#   --root DIR           chroot tree (default /srv/sftp; must match ChrootDirectory in sshd_config)
#   --keys-dir DIR       authorized keys, one file per account (default /etc/ssh/authorized_keys;
#                        must match AuthorizedKeysFile; root-owned, never under a tmp dir)
#   --key ACCOUNT=FILE   install FILE (an OpenSSH public key line) as ACCOUNT's only key; also
#                        the way to rotate a key (the old key stops working at once)
#   --staging            create the agency-only staging directory ROOT/.staging (agii 0700)
#   --dry-run            print what would change, change nothing
#   -h, --help           this text
#
# Creates, only where missing or different (a second run changes nothing and says so):
#   groups municipalities, agency; account agii (group agency); one account m<NIS> per NIS code
#   (group municipalities, no home, shell nologin, password hash '*': no password, not locked,
#   which sshd requires with UsePAM no);
#   ROOT root:root 0755, ROOT/m<NIS> root:root 0755 (chroots must be root-owned, not writable by
#   anyone else), ROOT/m<NIS>/inbox m<NIS>:agency 2770 (the municipality reads and deletes, the
#   agency writes, setgid keeps uploads in group agency, nobody else gets in), the symlink
#   ROOT/<NIS> -> m<NIS> (the registry's inbox path /<NIS>/inbox as the agency sees it), and
#   KEYS_DIR root:root 0755 with key files root:root 0644.
# It never deletes an account, a directory or a file: removing a municipality is a manual step.
set -euo pipefail
umask 022

readonly AGENCY_USER=agii
readonly AGENCY_GROUP=agency
readonly MUNI_GROUP=municipalities
readonly NOLOGIN=/usr/sbin/nologin

root_dir=/srv/sftp
keys_dir=/etc/ssh/authorized_keys
registry=""
staging=0
dry_run=0
changes=0
codes=()
keys=()

die() {
  printf 'setup-sftp-accounts: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# Every change goes through here: printed, counted, and skipped in dry-run mode.
change() {
  changes=$((changes + 1))
  if ((dry_run)); then
    printf 'would run:'
  else
    printf 'run:'
  fi
  printf ' %q' "$@"
  printf '\n'
  if ((!dry_run)); then
    "$@"
  fi
}

while (($#)); do
  case "$1" in
    --registry) registry=${2:?--registry needs a file}; shift 2 ;;
    --root) root_dir=${2:?--root needs a directory}; shift 2 ;;
    --keys-dir) keys_dir=${2:?--keys-dir needs a directory}; shift 2 ;;
    --key) keys+=("${2:?--key needs ACCOUNT=FILE}"); shift 2 ;;
    --staging) staging=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) codes+=("$1"); shift ;;
  esac
done

((EUID == 0)) || die "must run as root (creates accounts and root-owned directories)"

if [[ -n $registry ]]; then
  [[ -r $registry ]] || die "cannot read the registry $registry"
  # The registry is a YAML list of mappings with a "nis_code: '11002'" key (see kbi/registry.py);
  # no YAML parser is needed on the transfer server for that one key.
  mapfile -t from_registry < <(
    sed -n -E "s/^[[:space:]-]*nis_code:[[:space:]]*['\"]?([0-9]+)['\"]?[[:space:]]*(#.*)?$/\1/p" "$registry"
  )
  ((${#from_registry[@]})) || die "no nis_code entries found in $registry"
  codes+=("${from_registry[@]}")
fi

for code in "${codes[@]}"; do
  [[ $code =~ ^[0-9]{5}$ ]] || die "not a NIS code (5 digits): $code"
done
# Sorted and unique, so the output is stable and a code given twice is harmless.
if ((${#codes[@]})); then
  mapfile -t codes < <(printf '%s\n' "${codes[@]}" | sort -u)
fi

[[ $root_dir == /* && $keys_dir == /* ]] || die "--root and --keys-dir must be absolute paths"
root_dir=${root_dir%/}
keys_dir=${keys_dir%/}

# sshd refuses a chroot (and StrictModes refuses a key file) when a path component is not
# root-owned or is group/other-writable; /tmp (1777) is the classic trap. Check the existing
# parents before creating anything, so a bad layout fails here and not at the first login.
check_parents() {
  local path=$1 dir owner mode
  dir=$(dirname "$path")
  while :; do
    if [[ -e $dir ]]; then
      read -r owner mode < <(stat -L -c '%u %a' "$dir")
      if [[ $owner != 0 ]] || (((8#$mode & 8#022) != 0)); then
        die "$dir (owner uid $owner, mode $mode) must be root-owned and not group/other-writable: sshd refuses chroots and key files below it"
      fi
    fi
    [[ $dir == / ]] && break
    dir=$(dirname "$dir")
  done
}
check_parents "$root_dir/x"
check_parents "$keys_dir/x"

ensure_group() {
  local group=$1
  getent group "$group" >/dev/null || change groupadd --system "$group"
}

# ensure_account NAME GROUP HOME: a system account that can only be used through sshd's key check.
ensure_account() {
  local name=$1 group=$2 home=$3 entry primary shell current_home hash
  if ! entry=$(getent passwd "$name"); then
    change useradd --system --no-create-home --home-dir "$home" --shell "$NOLOGIN" --gid "$group" "$name"
    # a fresh system account is locked ('!'); sshd with UsePAM no refuses locked accounts
    change usermod -p '*' "$name"
    return
  fi
  IFS=: read -r _ _ _ primary _ current_home shell <<<"$entry"
  if [[ $primary != "$(getent group "$group" | cut -d: -f3)" ]]; then
    change usermod --gid "$group" "$name"
  fi
  [[ $shell == "$NOLOGIN" ]] || change usermod --shell "$NOLOGIN" "$name"
  [[ $current_home == "$home" ]] || change usermod --home "$home" "$name"
  hash=$(getent shadow "$name" | cut -d: -f2)
  [[ $hash == '*' ]] || change usermod -p '*' "$name"
}

# ensure_dir PATH OWNER GROUP MODE (mode as stat prints it, e.g. 755 or 2770)
ensure_dir() {
  local path=$1 owner=$2 group=$3 mode=$4
  if [[ -L $path || (-e $path && ! -d $path) ]]; then
    die "$path exists and is not a directory"
  fi
  if [[ ! -d $path ]]; then
    change mkdir -m "$mode" "$path"
    [[ $owner:$group == root:root ]] || change chown "$owner:$group" "$path"
    ((dry_run)) && return
  elif [[ $(stat -c '%U:%G' "$path") != "$owner:$group" ]]; then
    change chown "$owner:$group" "$path"
  fi
  # checked after the owner: a chown may clear the setgid bit
  [[ $(stat -c '%a' "$path") == "$mode" ]] || change chmod "$mode" "$path"
}

ensure_symlink() {
  local link=$1 target=$2
  if [[ -L $link ]]; then
    [[ $(readlink "$link") == "$target" ]] || change ln -sfn "$target" "$link"
  elif [[ -e $link ]]; then
    die "$link exists and is not a symlink"
  else
    change ln -s "$target" "$link"
  fi
}

# install_key ACCOUNT FILE: replace the account's key file atomically (rename in the same dir).
install_key() {
  local account=$1 file=$2 dest=$keys_dir/$1
  [[ -r $file ]] || die "cannot read the key file $file"
  grep -qE '^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9-]+@openssh\.com) ' "$file" ||
    die "$file is not an OpenSSH public key line"
  getent passwd "$account" >/dev/null || ((dry_run)) || die "no account $account for key $file"
  if [[ -f $dest ]] && cmp -s "$file" "$dest" && [[ $(stat -c '%U:%G %a' "$dest") == root:root\ 644 ]]; then
    return
  fi
  change install -o root -g root -m 0644 "$file" "$dest.new"
  change mv -f "$dest.new" "$dest"
}

ensure_group "$MUNI_GROUP"
ensure_group "$AGENCY_GROUP"
ensure_account "$AGENCY_USER" "$AGENCY_GROUP" /nonexistent
for code in "${codes[@]}"; do
  # home is relative to the chroot: an interactive sftp client starts in /inbox
  ensure_account "m$code" "$MUNI_GROUP" /inbox
done

# Missing parents are created root-owned 0755 (umask 022); existing ones were checked above.
for dir in "$(dirname "$root_dir")" "$(dirname "$keys_dir")"; do
  [[ -d $dir || $dir == "${created_parent:-}" ]] && continue
  change mkdir -p -m 755 "$dir"
  created_parent=$dir
done
ensure_dir "$root_dir" root root 755
for code in "${codes[@]}"; do
  ensure_dir "$root_dir/m$code" root root 755
  ensure_dir "$root_dir/m$code/inbox" "m$code" "$AGENCY_GROUP" 2770
  ensure_symlink "$root_dir/$code" "m$code"
done
if ((staging)); then
  # Same filesystem as the inboxes, so posix-rename into an inbox is atomic.
  ensure_dir "$root_dir/.staging" "$AGENCY_USER" "$AGENCY_GROUP" 700
  if ((!dry_run)); then
    staging_dev=$(stat -c %d "$root_dir/.staging")
    for code in "${codes[@]}"; do
      [[ $(stat -c %d "$root_dir/m$code/inbox") == "$staging_dev" ]] && continue
      printf 'setup-sftp-accounts: warning: %s is on another filesystem than %s: a rename from staging fails there (EXDEV); leave KBI_SFTP_STAGING_DIR unset\n' \
        "$root_dir/m$code/inbox" "$root_dir/.staging" >&2
    done
  fi
fi

ensure_dir "$keys_dir" root root 755
for spec in "${keys[@]}"; do
  [[ $spec == *=* ]] || die "--key takes ACCOUNT=FILE, not $spec"
  account=${spec%%=*}
  [[ $account == "$AGENCY_USER" || $account =~ ^m[0-9]{5}$ ]] || die "not an SFTP account: $account"
  install_key "$account" "${spec#*=}"
done

if ((changes == 0)); then
  echo "setup-sftp-accounts: nothing to change"
elif ((dry_run)); then
  echo "setup-sftp-accounts: $changes change(s) would be made (dry run)"
else
  echo "setup-sftp-accounts: $changes change(s) made"
fi
