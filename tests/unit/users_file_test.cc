// The users file of [auth] backend = "file" (core/users_file.h) and the
// hash check the password workers run (net/password_workers.h).
#include "core/users_file.h"

#include <gtest/gtest.h>

#include <string>

#include "net/password_workers.h"

namespace ringmx {
namespace {

constexpr const char* kSha512 =
    "$6$saltsaltsalt$FUTXsgNpMxVPwnX4XalnoSItgvVbUy6eQVJVcn9taCOEVAPu1PukMtU6lAfNfDb9ttqSN7i8gT2"
    "C5j2TY43X01";  // "s3cret"
constexpr const char* kBcrypt =
    "$2b$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK";  // "s3cret"
constexpr const char* kArgon2id =  // doveadm pw -s ARGON2ID, "s3cret"
    "$argon2id$v=19$m=65536,t=3,p=1$UgVtfS8MzisxKdDZOzUcNg$"
    "Il3TZdRDDBAz49Wb829f5XCl8Ug4Jwa6zjxCmK9P9g4";

TEST(UsersFile, CryptHashesWithOrWithoutDovecotPrefixes) {
  std::string error;
  const std::string text = std::string("# users\n\nalice@example.org:") + kSha512 +
                           "\nbob:{BLF-CRYPT}" + kBcrypt + ":1000:1000::/home/bob::\r\n" +
                           "carol:{ARGON2ID}" + kArgon2id + "\n";
  auto t = UsersFile::parse(text, "users", error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->size(), 3u);
  ASSERT_NE(t->find("carol"), nullptr);
  EXPECT_EQ(*t->find("carol"), kArgon2id);
  ASSERT_NE(t->find("alice@example.org"), nullptr);
  EXPECT_EQ(*t->find("alice@example.org"), kSha512);
  ASSERT_NE(t->find("bob"), nullptr);
  EXPECT_EQ(*t->find("bob"), kBcrypt);  // prefix and extra fields dropped
  EXPECT_EQ(t->find("Bob"), nullptr);   // names compare exactly
  EXPECT_EQ(t->decoy(), kSha512);
}

TEST(UsersFile, RefusesWhatIsNotASafeCryptHash) {
  const std::pair<std::string, std::string> bad[] = {
      {"alice:{PLAIN}s3cret\n", "users:1: not a crypt(3) hash"},
      {"alice:abJnggxhB/yWI\n", "users:1: not a crypt(3) hash"},  // DES crypt
      {"alice:$1$salt$hash\n", "users:1: not a crypt(3) hash"},   // md5-crypt
      {"alice\n", "users:1: expected \"user:hash\""},
      {std::string("a:") + kSha512 + "\na:" + kBcrypt + "\n", "users:2: user \"a\" given twice"},
      {"x:" + std::string(5000, 'h') + "\n", "users:1: line longer than 4096 octets"},
  };
  for (const auto& [text, want] : bad) {
    std::string error;
    EXPECT_FALSE(UsersFile::parse(text, "users", error)) << text;
    EXPECT_EQ(error.substr(0, want.size()), want) << error;
  }
}

constexpr const char* kYescrypt =  // libxcrypt crypt_gensalt("$y$"), "s3cret"
    "$y$j9T$c7px78ZnRwCTmRr2knMlK0$HkuPqFeBVWMc64q5mbyQCyPv8HA4/gRYItVjaApY/W4";

TEST(PasswordWorkers, HashesAreCheckedExactly) {
  EXPECT_TRUE(password_matches("s3cret", kYescrypt));
  EXPECT_FALSE(password_matches("s3creT", kYescrypt));
  EXPECT_TRUE(password_matches("s3cret", kArgon2id));
  EXPECT_FALSE(password_matches("s3cret!", kArgon2id));
  EXPECT_TRUE(password_matches("s3cret", kSha512));
  EXPECT_TRUE(password_matches("s3cret", kBcrypt));
  EXPECT_FALSE(password_matches("s3cret ", kSha512));
  EXPECT_FALSE(password_matches("S3cret", kBcrypt));
  EXPECT_FALSE(password_matches("", kSha512));
  EXPECT_FALSE(password_matches("s3cret", ""));  // no hash: never a match
  EXPECT_FALSE(password_matches("s3cret", "*"));
}

}  // namespace
}  // namespace ringmx
