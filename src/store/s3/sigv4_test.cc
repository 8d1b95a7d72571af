#include "store/s3/sigv4.h"

#include "core/crypto.h"
#include "gtest/gtest.h"

namespace kiln::store {
namespace {

// The "get-vanilla" case of AWS's SigV4 test suite.
TEST(SigV4, MatchesTheAwsTestSuiteVanillaGet) {
  SigningInput in;
  in.method = "GET";
  in.canonical_uri = "/";
  in.headers = {{"host", "example.amazonaws.com"}, {"x-amz-date", "20150830T123600Z"}};
  in.payload_sha256 = Sha256Hex("");
  in.amz_date = "20150830T123600Z";
  in.region = "us-east-1";
  in.service = "service";
  AwsCredentials creds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
  EXPECT_EQ(SignV4(in, creds),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(SigV4, EncodesUrisAndDates) {
  EXPECT_EQ(UriEncode("jobs/a b+c~d.png", true), "jobs/a%20b%2Bc~d.png");
  EXPECT_EQ(UriEncode("a/b", false), "a%2Fb");
  EXPECT_EQ(AmzDate(1440938160), "20150830T123600Z");
}

}  // namespace
}  // namespace kiln::store
