#!/bin/sh
# An exit-protocol probe in shell, monitoring-plugins style: is FILE present and fresh?
#   check_file.sh FILE [MAX_AGE_SECONDS]
# Exit 0 ok, 1 warn (stale), 2 fail (missing); the first line is the detail, and the perfdata
# after '|' becomes the probe's metrics.
file=${1:?usage: check_file.sh FILE [MAX_AGE_SECONDS]}
max_age=${2:-60}
if [ ! -e "$file" ]; then
  echo "CRITICAL: $file is missing"
  exit 2
fi
age=$(( $(date +%s) - $(stat -c %Y "$file") ))
if [ "$age" -gt "$max_age" ]; then
  echo "WARNING: $file is ${age}s old | age=${age}s;$max_age;;0"
  exit 1
fi
echo "OK: $file is ${age}s old | age=${age}s;$max_age;;0"
exit 0
