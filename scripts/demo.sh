#!/usr/bin/env bash
# `make demo`: the real commands of an emergency prod deploy, on the local sandbox, then four drills, then
# GitLab's deployment records backfilled once it is back.
# Everything below is the tool's real output; the sandbox is stopped whatever happens.
set -uo pipefail
MD="${MD:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/manual-deploy}"
DIR="$(mktemp -d -t manual-deploy-demo.XXXXXX)"
trap '"$MD" sandbox down --dir "$DIR"; rm -rf "$DIR"' EXIT

say() { printf '\n\033[1m━━ %s\033[0m\n' "$*" >&2; }
run() { printf '\033[36m$ %s\033[0m\n' "$*" >&2; "$@"; }
expect_fail() { printf '\033[36m$ %s\033[0m\n' "$*" >&2; "$@"; local rc=$?; printf '(exit %s: the drill expected this failure)\n' "$rc" >&2; [ "$rc" -ne 0 ]; }

say "Bring up the sandbox: registry, quay stand-in, emulated EKS contexts, app + config repos"
run "$MD" sandbox up --dir "$DIR" >/dev/null || exit 1
eval "$("$MD" sandbox env --dir "$DIR")"
cd "$DIR/apps/ingest-core" || exit 1
run "$MD" doctor --env prod || exit 1
say "GitLab is down (the sandbox plays the outage: its GitLab refuses connections)"
run "$MD" sandbox gitlab down || exit 1

say "1. Tag the commit to ship (prod: it must be on master)"
run "$MD" tag --env prod --reason "demo: GitLab is down" || exit 1
say "2. Wait for quay.io to build it"
run "$MD" wait-image || exit 1
say "3. Deploy to prod and prove it is live"
run "$MD" apply --env prod --yes --reason "demo: GitLab is down" || exit 1
run "$MD" status --env prod || exit 1

say "Drill 1: a commit that breaks the build — wait-image stops at once with the build page"
git commit -q --allow-empty -m "refactor upload service [fail build]" && git push -q origin master
run "$MD" tag --env prod || exit 1
expect_fail "$MD" wait-image || exit 1

say "Drill 2: quay's build trigger never fires for the tag — wait-image --start-build starts the build itself"
git commit -q --allow-empty -m "hotfix with a lost webhook [skip build]" && git push -q origin master
run "$MD" tag --env prod || exit 1
run "$MD" wait-image --start-build || exit 1

say "Drill 3: an image that crashes on start — apply stops early and rolls back"
git commit -q --allow-empty -m "new mongo client [crash]" && git push -q origin master
run "$MD" tag --env prod || exit 1
run "$MD" wait-image || exit 1
expect_fail "$MD" apply --env prod --yes --grace 5s --reason "demo: crash drill" || exit 1
run "$MD" status --env prod --app ingest-core || exit 1
run "$MD" history --env prod --app ingest-core || exit 1

say "Drill 4: the terminal closes mid-deploy — the run rolls back, frees its lock and exits 129"
printf '\033[36m$ setsid %s apply --env prod --yes --grace 2m --reason "demo: laptop lid closed" &\033[0m\n' "$MD" >&2
setsid "$MD" apply --env prod --yes --grace 2m --reason "demo: laptop lid closed" 2>"$DIR/hup.log" >/dev/null &
deploying=$!
for _ in $(seq 120); do  # at most 60 s: until its lock says helm is waiting on the pods
  "$MD" status --env prod --app ingest-core -o json 2>/dev/null | grep -q '"phase": "upgrade+verify"' && break
  sleep 0.5
done
run "$MD" status --env prod --app ingest-core || exit 1
printf '\033[36m$ kill -HUP -- -%s   # the terminal closed: its whole process group hears SIGHUP\033[0m\n' "$deploying" >&2
kill -HUP -- "-$deploying"
wait "$deploying"; rc=$?
tail -5 "$DIR/hup.log" >&2
printf '(exit %s: 129 is SIGHUP, after the cleanup)\n' "$rc" >&2
[ "$rc" -eq 129 ] || exit 1
run "$MD" status --env prod --app ingest-core || exit 1

say "GitLab is back: give it the deployment records of the deploys made without it, oldest first"
run "$MD" sandbox gitlab up || exit 1
run "$MD" gitlab-sync || exit 1
run "$MD" gitlab-sync || exit 1
run "$MD" status --env prod --app ingest-core || exit 1

say "Done: the sandbox is stopped on exit."
