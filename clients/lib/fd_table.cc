#include "clients/lib/fd_table.h"

namespace mknet::client {

SocketTable& table() {
  static SocketTable* t = new SocketTable;
  return *t;
}

}  // namespace mknet::client
