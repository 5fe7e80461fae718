// Decoder and job-encoding throughput: the reader's CPU cost per row, without any server.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "cdc/assembler.h"
#include "cdc/pgoutput.h"
#include "pipeline/source_adapter.h"
#include "projections/bank/bank.h"
#include "projections/registry.h"
#include "queue/job.h"

namespace {

using namespace walfold;

void put16(std::vector<std::uint8_t>& b, std::uint16_t v) {
  b.push_back(v >> 8);
  b.push_back(v & 0xff);
}
void put32(std::vector<std::uint8_t>& b, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) b.push_back((v >> (8 * i)) & 0xff);
}
void put_str(std::vector<std::uint8_t>& b, const char* s) {
  b.insert(b.end(), s, s + std::strlen(s) + 1);
}
void put_text(std::vector<std::uint8_t>& b, const char* s) {
  b.push_back('t');
  put32(b, static_cast<std::uint32_t>(std::strlen(s)));
  b.insert(b.end(), s, s + std::strlen(s));
}

std::vector<std::uint8_t> relation_msg() {
  std::vector<std::uint8_t> b{'R'};
  put32(b, 16384);
  put_str(b, "public");
  put_str(b, "transactions");
  b.push_back('f');
  const char* cols[] = {"id", "account_id", "amount", "kind", "transfer_id", "created_at"};
  std::uint32_t oids[] = {20, 20, 1700, 25, 2950, 1184};
  put16(b, 6);
  for (int i = 0; i < 6; ++i) {
    b.push_back(i == 0);
    put_str(b, cols[i]);
    put32(b, oids[i]);
    put32(b, 0xffffffff);
  }
  return b;
}

std::vector<std::uint8_t> insert_msg() {
  std::vector<std::uint8_t> b{'I'};
  put32(b, 16384);
  b.push_back('N');
  put16(b, 6);
  put_text(b, "123456");
  put_text(b, "4242");
  put_text(b, "1234.5678");
  put_text(b, "deposit");
  b.push_back('n');
  put_text(b, "2026-11-23 02:19:57.123456+00");
  return b;
}

class NullHandler : public cdc::Handler {
 public:
  void on_begin(const cdc::Begin&) override {}
  void on_commit(const cdc::Commit&) override {}
  void on_relation(const cdc::Relation&) override {}
  void on_insert(std::uint32_t, cdc::Tuple t) override { benchmark::DoNotOptimize(t.data()); }
  void on_update(std::uint32_t, char, cdc::Tuple, cdc::Tuple) override {}
  void on_delete(std::uint32_t, char, cdc::Tuple) override {}
  void on_truncate(const cdc::Truncate&) override {}
};

void BM_DecodeInsert(benchmark::State& state) {
  cdc::Decoder d;
  NullHandler h;
  auto rel = relation_msg();
  auto ins = insert_msg();
  d.decode(rel, h);
  for (auto _ : state) d.decode(ins, h);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeInsert);

// Decode + assemble + encode: what the reader spends per row before Redis.
void BM_AssembleAndEncode(benchmark::State& state) {
  Config cfg = projections::parse_config("postgres: {dsn: 'x'}\n", "bench");
  std::size_t bytes = 0;
  pipeline::SourceAdapter src(cfg, projections::bank::projection());
  cdc::Assembler a(src.source, src.router, pipeline::assembly_settings(cfg),
                   [&](cdc::CommittedTransaction&& t) {
                     for (auto& j : t.jobs) bytes += queue::encode_job(j).size();
                   });
  cdc::Decoder d;
  auto rel = relation_msg();
  auto ins = insert_msg();
  d.decode(rel, a);
  std::uint64_t lsn = 1000;
  for (auto _ : state) {
    a.on_begin({lsn, 0, 1});
    d.decode(ins, a);
    a.on_commit({0, lsn, lsn + 10, 0});
    lsn += 100;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_job"] =
      static_cast<double>(bytes) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_AssembleAndEncode);

}  // namespace
