# aibx's command agent (POSIX sh): one long-lived SSH channel runs every command of a run, one round trip each.
# Started by the SSH transport as: exec /bin/sh -c "$(this file)" aibx-agent /tmp/aibx-agent-<random>
#
# Request (on stdin):  "<nonce> <stdin length>\n<command, one line>\n<stdin bytes>"
# Each command runs in a fresh "$SHELL -c" (a new process with the session's environment, as an exec channel
# runs it) with its stdin bytes as its stdin and the channel's stdout and stderr as its own: its output streams
# live. The agent writes "<nonce><" on stdout just before it starts the command, then "<nonce>>" on stderr and
# "<nonce>><exit status>" on stdout after it (the nonce is new for every command and only the transport knows
# it: output cannot fake the end).
# The stdin bytes go to a private file that is unlinked at once (the agent keeps it open as fd 3 and rewrites it
# through /proc), so nothing is left behind when the agent is killed. When head -c does not stop at exactly N
# bytes (busybox), or /proc is missing, the agent says "unsupported" and the transport falls back to one channel
# per command.
# Variables start with _aibx_ so that none of them reaches a command; no signal is trapped or ignored, so a
# command inherits the session's dispositions, and a signal to the process group stops the command and the agent.
_aibx_t=$1
(umask 077; set -C; : >"$_aibx_t") || { echo "aibx-agent unsupported: cannot create $_aibx_t"; exit 0; }
exec 3<"$_aibx_t"
rm -f "$_aibx_t"
_aibx_s=/proc/$$/fd/3
_aibx_x=$(printf abc | { head -c 1 >"$_aibx_s" && cat; } 2>/dev/null)
if [ "$_aibx_x" != bc ] || [ "$(cat "$_aibx_s" 2>/dev/null)" != a ]; then
  echo "aibx-agent unsupported: head -c or /proc"
  exit 0
fi
# the session's shell level, as the command's shell would have seen it from sshd (the login shell raised it)
case ${SHLVL-} in [1-9]*) SHLVL=$((SHLVL - 1)) ;; esac
_aibx_sh=${SHELL:-/bin/sh}
_aibx_0=${_aibx_sh##*/}  # $0 as sshd sets it: the shell's name without its directory
# the agent's own messages (a shell reports "Terminated" for a command killed by a signal) go nowhere; commands
# get the channel's stderr as fd 2, redirected in the subshell that becomes the command (dash redirects a simple
# command's files in the parent while it waits, where its own message would then go to the channel)
exec 4>&2 2>/dev/null
echo "aibx-agent ready 1"
while IFS=' ' read -r _aibx_nonce _aibx_n && IFS= read -r _aibx_cmd; do
  if [ "$_aibx_n" -gt 0 ]; then
    head -c "$_aibx_n" >"$_aibx_s" || exit 1
    printf '%s<\n' "$_aibx_nonce"
    (exec "$_aibx_sh" -c "$_aibx_cmd" "$_aibx_0" <"$_aibx_s" 2>&4 3<&- 4>&-)
  else
    printf '%s<\n' "$_aibx_nonce"
    (exec "$_aibx_sh" -c "$_aibx_cmd" "$_aibx_0" </dev/null 2>&4 3<&- 4>&-)
  fi
  _aibx_rc=$?
  printf '%s>\n' "$_aibx_nonce" >&4
  printf '%s>%s\n' "$_aibx_nonce" "$_aibx_rc"
done
