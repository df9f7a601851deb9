#include "clients/preload/real_libc.h"

#include <dlfcn.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace mknet::preload {

namespace {

void* next(const char* name, bool required) {
  void* p = ::dlsym(RTLD_NEXT, name);
  if (p == nullptr && required) {
    // A raw syscall: write() is interposed, and this table is not ready.
    auto say = [](const char* s) { (void)::syscall(SYS_write, 2, s, std::strlen(s)); };
    say("mknet-preload: libc has no ");
    say(name);
    say("\n");
    std::abort();
  }
  return p;
}

template <typename F>
void bind(F*& slot, const char* name, bool required = true) {
  slot = reinterpret_cast<F*>(next(name, required));
}

RealLibc resolve() {
  RealLibc r{};
  bind(r.socket, "socket");
  bind(r.bind, "bind");
  bind(r.listen, "listen");
  bind(r.accept, "accept");
  bind(r.accept4, "accept4");
  bind(r.connect, "connect");
  bind(r.shutdown, "shutdown");
  bind(r.close, "close");
  bind(r.read, "read");
  bind(r.readv, "readv");
  bind(r.write, "write");
  bind(r.writev, "writev");
  bind(r.recv, "recv");
  bind(r.recvfrom, "recvfrom");
  bind(r.recvmsg, "recvmsg");
  bind(r.recvmmsg, "recvmmsg");
  bind(r.send, "send");
  bind(r.sendto, "sendto");
  bind(r.sendmsg, "sendmsg");
  bind(r.sendmmsg, "sendmmsg");
  bind(r.sendfile, "sendfile");
  bind(r.getsockopt, "getsockopt");
  bind(r.setsockopt, "setsockopt");
  bind(r.getsockname, "getsockname");
  bind(r.getpeername, "getpeername");
  bind(r.fcntl, "fcntl");
  bind(r.ioctl, "ioctl");
  bind(r.poll, "poll");
  bind(r.ppoll, "ppoll");
  bind(r.select, "select");
  bind(r.pselect, "pselect");
  bind(r.epoll_create, "epoll_create");
  bind(r.epoll_create1, "epoll_create1");
  bind(r.epoll_ctl, "epoll_ctl");
  bind(r.epoll_wait, "epoll_wait");
  bind(r.epoll_pwait, "epoll_pwait");
  bind(r.epoll_pwait2, "epoll_pwait2", false);
  bind(r.dup, "dup");
  bind(r.dup2, "dup2");
  bind(r.dup3, "dup3");
  bind(r.fork, "fork");
  bind(r.execve, "execve");
  bind(r.execvpe, "execvpe");
  return r;
}

}  // namespace

const RealLibc& real() {
  static const RealLibc table = resolve();
  return table;
}

}  // namespace mknet::preload
