#include "store/blob_store.h"

#include <filesystem>
#include <fstream>

#include "core/ids.h"
#include "gtest/gtest.h"

namespace kiln::store {
namespace {

class BlobStoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      dir_ = std::filesystem::temp_directory_path() / ("kiln-store-test-" + NewUlid());
      auto s = BlobStore::Open("file://" + dir_.string());
      ASSERT_TRUE(s.ok()) << s.status();
      store_ = std::move(*s);
    } else {
      store_ = NewMemoryStore();
    }
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
  std::unique_ptr<BlobStore> store_;
};

TEST_P(BlobStoreTest, PutGetListDelete) {
  ASSERT_TRUE(store_->Put("jobs/a/0.png", "zero").ok());
  ASSERT_TRUE(store_->Put("jobs/a/1.png", "one").ok());
  ASSERT_TRUE(store_->Put("jobs/b/0.png", "other").ok());
  ASSERT_TRUE(store_->Put("jobs/a/0.png", "zero again").ok());  // overwrite
  EXPECT_EQ(*store_->Get("jobs/a/0.png"), "zero again");
  EXPECT_TRUE(*store_->Exists("jobs/a/1.png"));
  EXPECT_FALSE(*store_->Exists("jobs/a/2.png"));
  EXPECT_TRUE(absl::IsNotFound(store_->Get("jobs/a/2.png").status()));
  EXPECT_EQ(*store_->List("jobs/a/"), (std::vector<std::string>{"jobs/a/0.png", "jobs/a/1.png"}));
  EXPECT_EQ(store_->List("jobs/")->size(), 3u);
  ASSERT_TRUE(store_->Delete("jobs/a/0.png").ok());
  ASSERT_TRUE(store_->Delete("jobs/a/0.png").ok());  // absent is fine
  EXPECT_EQ(store_->List("jobs/a/")->size(), 1u);
  ASSERT_TRUE(store_->Put("big", std::string(1 << 20, 'x')).ok());
  EXPECT_EQ(store_->Get("big")->size(), size_t{1} << 20);
}

TEST_P(BlobStoreTest, KeysCannotEscapeTheRoot) {
  for (const char* bad :
       {"", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "a/\n", "a/.."}) {
    EXPECT_TRUE(absl::IsInvalidArgument(store_->Put(bad, "x"))) << bad;
    EXPECT_TRUE(absl::IsInvalidArgument(store_->Get(bad).status())) << bad;
  }
  EXPECT_FALSE(store_->Put(std::string(kMaxKeyBytes + 1, 'a'), "x").ok());
}

TEST_P(BlobStoreTest, ConditionalWritesLandOnlyOverTheVersionTheyRead) {
  // Creating: only where nothing is.
  auto v1 = store_->PutIf("jobs/j/job.json", "queued", "");
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->PutIf("jobs/j/job.json", "again", "").status()));
  auto read = store_->GetVersioned("jobs/j/job.json");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->bytes, "queued");
  EXPECT_EQ(read->version, *v1);
  // Two writers read v1; the first one's write lands, the second's is refused and changes
  // nothing.
  auto v2 = store_->PutIf("jobs/j/job.json", "running on B", *v1);
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_NE(*v2, *v1);
  auto stale = store_->PutIf("jobs/j/job.json", "succeeded on A", *v1);
  EXPECT_TRUE(absl::IsFailedPrecondition(stale.status())) << stale.status();
  EXPECT_EQ(*store_->Get("jobs/j/job.json"), "running on B");
  EXPECT_TRUE(store_->PutIf("jobs/j/job.json", "succeeded on B", *v2).ok());
  // A key that is gone matches no version.
  ASSERT_TRUE(store_->Delete("jobs/j/job.json").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->PutIf("jobs/j/job.json", "x", *v2).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->GetVersioned("jobs/j/job.json").status()));
  // The file store's lock file is not a key.
  ASSERT_TRUE(store_->PutIf("top.json", "{}", "").ok());
  EXPECT_EQ(*store_->List(""), std::vector<std::string>{"top.json"});
}

INSTANTIATE_TEST_SUITE_P(Backends, BlobStoreTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "File" : "Memory"; });

TEST(FileStore, LeavesNoTemporaryFiles) {
  const auto dir = std::filesystem::temp_directory_path() / ("kiln-store-tmp-" + NewUlid());
  auto store = BlobStore::Open("file://" + dir.string());
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*store)->Put("k/v", std::to_string(i)).ok());
  int files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    files += e.is_regular_file();
  }
  EXPECT_EQ(files, 1);
  EXPECT_EQ(*(*store)->Get("k/v"), "19");
  // What a crash mid-write leaves behind is removed on request, and never listed as a key.
  {
    std::ofstream partial(dir / "k" / ".tmp-v-123-4");
    partial << "half";
  }
  EXPECT_EQ(*(*store)->List("k/"), std::vector<std::string>{"k/v"});
  ASSERT_TRUE((*store)->RemoveLeftovers("k").ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "k" / ".tmp-v-123-4"));
  EXPECT_TRUE((*store)->RemoveLeftovers("absent").ok());
  EXPECT_FALSE(BlobStore::Open("file://relative").ok());
  EXPECT_FALSE(BlobStore::Open("ftp://x").ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiln::store
