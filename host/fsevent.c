/*
** fsevent.c: a file-system watcher (uv_fs_event_t) on a file or a
** directory. Hot reload (lua/loom/reload.lua) watches the directories of
** the files it loaded: a directory's watch sees a write to a file in it
** and an editor's rename-over save alike, and stays armed across both,
** where a watch on the file itself would be left on the replaced inode.
** Unreferenced: watching never keeps the loop alive.
*/
#include "internal.h"

static void close_op(loom_object *o) {
  loom__fsevent_close(loom__object_of(o, loom_fsevent, obj));
}

static const loom_object_ops fsevent_ops = { "fs_event", NULL, close_op };

static void on_fsevent(uv_fs_event_t *h, const char *filename, int events,
                       int status) {
  loom_fsevent *w = (loom_fsevent *)h;
  if (w->closing)
    return;
  w->cb(w, filename, events, status);
}

int loom__fsevent_start(loom_fsevent *w, loom_state *st, const char *path,
                        loom_fsevent_cb cb) {
  int rc = uv_fs_event_init(st->loop, &w->h);
  if (rc < 0)
    return rc;
  loom__object_link(st, &w->obj, &fsevent_ops);
  w->st = st;
  w->cb = cb;
  rc = uv_fs_event_start(&w->h, on_fsevent, path, 0);
  uv_unref((uv_handle_t *)&w->h);
  return rc;
}

static void on_fsevent_closed(uv_handle_t *h) {
  loom_fsevent *w = (loom_fsevent *)h;
  w->on_closed(w);
}

void loom__fsevent_close(loom_fsevent *w) {
  if (w->closing)
    return;
  w->closing = 1;
  loom__object_unlink(&w->obj);
  uv_close((uv_handle_t *)&w->h, on_fsevent_closed);
}
