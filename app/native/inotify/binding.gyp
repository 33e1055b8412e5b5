{
  "targets": [
    {
      "target_name": "inotify",
      "sources": ["src/inotify.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
