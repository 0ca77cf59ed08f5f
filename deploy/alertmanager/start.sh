#!/bin/sh
# Fill alertmanager.yml's ${NAME} placeholders from the environment (escaped for YAML's double-quoted
# strings, so a password may hold any character), into a file only this user reads, then run it.
set -eu
umask 077
awk 'function escaped(value,   out, i, c) {
  out = ""
  for (i = 1; i <= length(value); i++) {
    c = substr(value, i, 1)
    if (c == "\\" || c == "\"") out = out "\\"
    out = out c
  }
  return out
}
{
  line = $0; out = ""
  while (match(line, /\$\{[A-Z_]+\}/)) {
    value = escaped(ENVIRON[substr(line, RSTART + 2, RLENGTH - 3)])
    out = out substr(line, 1, RSTART - 1) value
    line = substr(line, RSTART + RLENGTH)
  }
  print out line
}' /etc/alertmanager/alertmanager.yml > /tmp/alertmanager.yml
exec alertmanager --config.file=/tmp/alertmanager.yml --storage.path=/alertmanager "$@"
