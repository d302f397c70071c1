#include "core/config_diff.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringmx {
namespace {

using Keys = std::vector<std::string>;

TEST(ConfigDiff, NamesChangedAddedAndRemovedKeys) {
  const char* before =
      "[server]\nmax_connections = 100\nhostname = \"mx.test\"\n"
      "[[listener]]\naddress = \"127.0.0.1:25\"\n"
      "[[listener]]\naddress = \"127.0.0.1:465\"\ntls = \"implicit\"\n"
      "[[route]]\ndomains = [\"a.test\"]\ndestination = \"lmtp://127.0.0.1:24\"\n";
  const char* after =
      "[server]\nmax_connections = 200\nhostname = \"mx.test\"\nlog_format = \"json\"\n"
      "[[listener]]\naddress = \"127.0.0.1:25\"\nproxy_protocol = \"v2\"\n"
      "[[listener]]\naddress = \"127.0.0.1:465\"\n"
      "[[route]]\ndomains = [\"a.test\", \"b.test\"]\ndestination = \"lmtp://127.0.0.1:24\"\n";
  EXPECT_EQ(changed_config_keys(before, after),
            (Keys{"listener[0].proxy_protocol", "listener[1].tls", "route[0].domains",
                  "server.log_format", "server.max_connections"}));
  EXPECT_EQ(changed_config_keys(before, before), Keys{});
}

TEST(ConfigDiff, FormattingAloneIsNoChange) {
  EXPECT_EQ(changed_config_keys("[server]\nshards = 2 # two\n", "server.shards=2\n"), Keys{});
  EXPECT_EQ(changed_config_keys("[spool]\ndir = 'x'\n", "[spool]\ndir = \"x\"\n"), Keys{});
}

TEST(ConfigDiff, NotTomlGivesNothing) {
  EXPECT_EQ(changed_config_keys("[server\n", "[server]\nshards = 1\n"), Keys{});
  EXPECT_EQ(changed_config_keys("", "[server]\nshards = 1\n"), Keys{"server.shards"});
}

}  // namespace
}  // namespace ringmx
