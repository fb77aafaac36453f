#!/bin/sh
# Turns cowcheck's KTAP (`cowcheck corpus DIR --tap`, one line per scenario) into LAVA test
# results: one `lava-test-case NAME --result pass|fail|skip` per scenario. Reads KTAP on stdin
# (or from the file named by $1); exits 0 when every scenario passed or was skipped, 1 otherwise.
# POSIX sh, no other dependency, so that it runs on a lab's device under test as it is.
set -eu
status=0
input="${1:-/dev/stdin}"
while IFS= read -r line; do
	case "$line" in
	"ok "*|"not ok "*) ;;
	*) continue ;;
	esac
	result=pass
	case "$line" in
	"not ok "*) result=fail; rest=${line#not ok } ;;
	*) rest=${line#ok } ;;
	esac
	# "N name # SKIP reason": drop the number, keep the name, read the directive.
	rest=${rest#* }
	name=${rest%% \#*}
	case "$rest" in
	*"# SKIP"*) result=skip ;;
	esac
	# LAVA test case names: letters, digits, '-', '_', '.'.
	name=$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_')
	[ "$result" = fail ] && status=1
	lava-test-case "$name" --result "$result"
done < "$input"
exit "$status"
