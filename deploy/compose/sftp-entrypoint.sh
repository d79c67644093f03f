#!/usr/bin/env bash
# Entry point of the compose file's transfer server (image deploy/sftp/Dockerfile).
#
# On every start: keep one ed25519 host key in a volume (made on the first start; its public
# line is printed, to pin in the Airflow connection kbi_sftp), create the accounts and chroots of
# every municipality in the registry with deploy/sftp/setup-sftp-accounts.sh (idempotent), install
# the agency's key from KBI_SFTP_AGENCY_PUBKEY and each municipality's key from
# $SFTP_CLIENT_KEYS/m<NIS>.pub, check the configuration, then run sshd in the foreground.
set -euo pipefail

hostkey_dir=${SFTP_HOSTKEY_DIR:-/var/lib/kbi-sftp}
registry=${KBI_REGISTRY:-/etc/kbi/recipients.yaml}
client_keys=${SFTP_CLIENT_KEYS:-/etc/kbi/sftp-keys}
config=/etc/ssh/sshd_config

say() { printf 'sftp-entrypoint: %s\n' "$*"; }

install -d -o root -g root -m 0700 "$hostkey_dir"
if [[ ! -s $hostkey_dir/ssh_host_ed25519_key ]]; then
  ssh-keygen -q -t ed25519 -N '' -C kbi-sftp -f "$hostkey_dir/ssh_host_ed25519_key"
fi
install -o root -g root -m 0600 "$hostkey_dir/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -o root -g root -m 0644 "$hostkey_dir/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
say "host key to pin (kbi_sftp extra host_key): $(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)"

args=(--staging)
if [[ -r $registry ]]; then
  args+=(--registry "$registry")
else
  say "warning: no registry at $registry: only the agency account and the keyed municipalities"
fi

# The agency's public key comes from the environment, so .env holds the whole key pair's story.
: "${KBI_SFTP_AGENCY_PUBKEY:?the agency account needs its public key (KBI_SFTP_AGENCY_PUBKEY)}"
agency_key=$(mktemp)
printf '%s\n' "$KBI_SFTP_AGENCY_PUBKEY" >"$agency_key"
args+=(--key "agii=$agency_key")

shopt -s nullglob
for file in "$client_keys"/m[0-9][0-9][0-9][0-9][0-9].pub; do
  account=$(basename "$file" .pub)
  # a key implies the account, also for a municipality not (yet) in the registry
  args+=("${account#m}" --key "$account=$file")
done

setup-sftp-accounts "${args[@]}"
rm -f "$agency_key"
install -d -o root -g root -m 0755 /run/sshd
/usr/sbin/sshd -t -f "$config"
say "sshd starting"
# -D: stay in the foreground (PID 1's child, stopped by docker stop); -e: log to stderr (docker logs).
exec /usr/sbin/sshd -D -e -f "$config"
