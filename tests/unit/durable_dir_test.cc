// make_durable_dirs: every missing component is created, and the parent of
// every component, created now or found, is fsynced (docs/spool.md,
// "Directories"). The syncs themselves cannot be observed here; the list of
// directories synced can.
#include "pipeline/durable_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "tests/unit/scratch_dir.h"

namespace ringmx {
namespace {

namespace fs = std::filesystem;
using test_support::ScratchDir;

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(SpoolDurableDirs, CreatesMissingComponentsAndSyncsEveryParent) {
  ScratchDir scratch;
  const std::string& top = scratch.str();
  const DurableDirs d = make_durable_dirs(top + "/spool/shard-0");
  EXPECT_EQ(d.created, (std::vector<std::string>{top + "/spool", top + "/spool/shard-0"}));
  ASSERT_FALSE(d.synced.empty());
  EXPECT_EQ(d.synced.front(), "/");
  EXPECT_TRUE(has(d.synced, top));
  EXPECT_TRUE(has(d.synced, top + "/spool"));
  EXPECT_EQ(d.synced.back(), top + "/spool/shard-0");
  struct stat st {};
  ASSERT_EQ(::stat((top + "/spool/shard-0").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0027, 0u);  // 0750 less the umask
}

// A directory an earlier run created and crashed before syncing is found,
// not created: its parent must be synced all the same.
TEST(SpoolDurableDirs, SyncsTheParentsOfDirectoriesThatAlreadyExist) {
  ScratchDir scratch;
  const std::string& top = scratch.str();
  fs::create_directories(top + "/spool/shard-0");
  const DurableDirs d = make_durable_dirs(top + "/spool/shard-0/");
  EXPECT_TRUE(d.created.empty());
  EXPECT_TRUE(has(d.synced, top));
  EXPECT_TRUE(has(d.synced, top + "/spool"));
  EXPECT_TRUE(has(d.synced, top + "/spool/shard-0"));
}

TEST(SpoolDurableDirs, ARelativePathSyncsTheWorkingDirectoryAndItsParents) {
  ScratchDir scratch;
  const fs::path before = fs::current_path();
  fs::current_path(scratch.path());
  DurableDirs d;
  try {
    d = make_durable_dirs("./spool//shard-1");
  } catch (...) {
    fs::current_path(before);
    throw;
  }
  fs::current_path(before);
  EXPECT_EQ(d.created, (std::vector<std::string>{"./spool", "./spool//shard-1"}));
  EXPECT_EQ(d.synced.front(), "/");
  EXPECT_TRUE(has(d.synced, "."));
  EXPECT_TRUE(has(d.synced, "./spool"));
  // The working directory's own name, in its parent.
  EXPECT_TRUE(has(d.synced, fs::path(scratch.path()).parent_path().string()));
  EXPECT_TRUE(fs::is_directory(fs::path(scratch.path()) / "spool" / "shard-1"));
}

TEST(SpoolDurableDirs, ThrowsNamingThePathAndTheReason) {
  ScratchDir scratch;
  {
    std::ofstream f(scratch.str() + "/file");
    f << "x";
  }
  const std::string path = scratch.str() + "/file/spool";
  try {
    make_durable_dirs(path);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find("Not a directory"), std::string::npos) << what;
  }
  EXPECT_THROW(make_durable_dirs(""), std::runtime_error);
}

}  // namespace
}  // namespace ringmx
