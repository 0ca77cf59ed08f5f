#!/bin/sh
# The platform database's backups (the pg-backup service of docker-compose.yml):
#   pg-backup.sh once      one pg_dump (custom format) to $BACKUP_DIR, then prune
#   pg-backup.sh loop      the same every $PG_BACKUP_INTERVAL_SECONDS (default a day)
#   pg-backup.sh restore FILE DATABASE   restore a dump into DATABASE (created; refused if it exists)
# A dump is written under a temporary name and renamed when complete, so a half-written file never
# counts as a backup; dumps older than $PG_BACKUP_KEEP_DAYS days are removed, the newest always kept.
# Connection settings come from PGHOST, PGUSER, PGPASSWORD, PGDATABASE.
set -eu
BACKUP_DIR=${BACKUP_DIR:-/var/lib/quantmesh/backups/platform}
KEEP_DAYS=${PG_BACKUP_KEEP_DAYS:-14}
INTERVAL=${PG_BACKUP_INTERVAL_SECONDS:-86400}

log() { printf '{"time":"%s","level":"%s","logger":"pg-backup","message":"%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2"; }

once() {
  mkdir -p "$BACKUP_DIR"
  name="$PGDATABASE-$(date -u +%Y%m%dT%H%M%SZ).dump"
  if pg_dump --format=custom --file="$BACKUP_DIR/.$name.partial" "$PGDATABASE"; then
    mv "$BACKUP_DIR/.$name.partial" "$BACKUP_DIR/$name"
    log INFO "dumped $PGDATABASE to $name ($(wc -c < "$BACKUP_DIR/$name") bytes)"
  else
    rm -f "$BACKUP_DIR/.$name.partial"
    log ERROR "pg_dump of $PGDATABASE failed"
    return 1
  fi
  newest=$(ls -1 "$BACKUP_DIR" | grep '\.dump$' | sort | tail -n 1)
  find "$BACKUP_DIR" -maxdepth 1 -name '*.dump' -mtime "+$KEEP_DAYS" ! -name "$newest" -print | while read -r old; do
    rm -f "$old"; log INFO "removed $(basename "$old") (older than $KEEP_DAYS days)"
  done
}

case "${1:-once}" in
  once) once ;;
  loop)
    while true; do
      once || true
      sleep "$INTERVAL"
    done ;;
  restore)
    file=$2; target=$3
    createdb "$target"
    pg_restore --no-owner --exit-on-error --dbname="$target" "$file"
    log INFO "restored $(basename "$file") into $target" ;;
  *) echo "usage: pg-backup.sh once|loop|restore FILE DATABASE" >&2; exit 2 ;;
esac
