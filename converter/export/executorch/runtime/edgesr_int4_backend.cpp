// ExecuTorch delegate "EdgesrInt4Backend": runs 2DQuant's quantized linears and attention matmuls with the
// shared native kernels (native/). The blob layout is written by converter/export/blob.py (see its docstring).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/core/error.h>
#include <executorch/runtime/core/evalue.h>

#include "edgesr_kernels.h"

using executorch::runtime::ArrayRef;
using executorch::runtime::Backend;
using executorch::runtime::BackendExecutionContext;
using executorch::runtime::BackendInitContext;
using executorch::runtime::BackendInterface;
using executorch::runtime::CompileSpec;
using executorch::runtime::DelegateHandle;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::FreeableBuffer;
using executorch::runtime::Result;
using executorch::runtime::Span;

namespace {

constexpr uint32_t kVersion = 1;
constexpr uint32_t kOpLinear = 1;
constexpr uint32_t kOpBmm = 2;
constexpr uint32_t kOpAttention = 3;
constexpr uint32_t kOpSwinBlock = 4;

int g_threads = 0;  // 0: not set; read EDGESR_THREADS once, default 1

int thread_count() {
  if (g_threads <= 0) {
    const char* env = std::getenv("EDGESR_THREADS");
    int n = env ? std::atoi(env) : 1;
    g_threads = n > 0 ? n : 1;
  }
  return g_threads;
}

struct Reader {
  const uint8_t* p;
  size_t left;
  bool ok = true;
  template <typename T>
  T get() {
    T v{};
    if (left < sizeof(T)) {
      ok = false;
      return v;
    }
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    left -= sizeof(T);
    return v;
  }
  const uint8_t* take(size_t n) {
    if (left < n) {
      ok = false;
      return nullptr;
    }
    const uint8_t* r = p;
    p += n;
    left -= n;
    return r;
  }
};

struct Handle {
  uint32_t op = 0;
  int bits = 0;
  // linear
  edgesr_qlinear* linear = nullptr;
  int n = 0, k = 0;
  // bmm
  int b_transposed = 0;
  float a_lo = 0, a_hi = 0, b_lo = 0, b_hi = 0;
  // attention
  int heads = 0, has_mask = 0;
  float bounds[8] = {};
  // whole Swin block
  edgesr_swin_block* block = nullptr;
  size_t tokens = 0, dim = 0, workspace_floats = 0;
};

// One workspace per executing thread, shared by every block it runs (blocks run one after another).
float* block_workspace(size_t floats) {
  thread_local std::vector<float> workspace;
  if (workspace.size() < floats) workspace.resize(floats);
  return workspace.data();
}

class EdgesrInt4Backend final : public BackendInterface {
 public:
  bool is_available() const override {
    return true;
  }

  Result<DelegateHandle*> init(BackendInitContext&, FreeableBuffer* processed,
                               ArrayRef<CompileSpec>) const override {
    Reader r{static_cast<const uint8_t*>(processed->data()), processed->size()};
    const uint8_t* magic = r.take(4);
    if (!magic || std::memcmp(magic, "EQ4D", 4) != 0) {
      return Error::DelegateInvalidCompatibility;
    }
    uint32_t version = r.get<uint32_t>();
    if (version != kVersion) {
      return Error::DelegateInvalidCompatibility;
    }
    Handle* h = new (std::nothrow) Handle();
    if (!h) {
      return Error::MemoryAllocationFailed;
    }
    h->op = r.get<uint32_t>();
    h->bits = static_cast<int>(r.get<uint32_t>());
    if (h->op == kOpLinear) {
      h->linear = edgesr_qlinear_from_blob(processed->data(), processed->size());  // the native parser
      if (!h->linear) {
        delete h;
        return Error::InvalidProgram;
      }
      edgesr_qlinear_shape(h->linear, &h->n, &h->k);
    } else if (h->op == kOpBmm) {
      float b[4];
      if (edgesr_qbmm_from_blob(processed->data(), processed->size(), &h->bits, &h->b_transposed, b) != 0) {
        delete h;
        return Error::InvalidProgram;
      }
      h->a_lo = b[0];
      h->a_hi = b[1];
      h->b_lo = b[2];
      h->b_hi = b[3];
    } else if (h->op == kOpAttention) {
      h->heads = static_cast<int>(r.get<uint32_t>());
      h->has_mask = static_cast<int>(r.get<uint32_t>());
      for (float& b : h->bounds) b = r.get<float>();
      if (!r.ok || h->heads < 1) {
        delete h;
        return Error::InvalidProgram;
      }
    } else if (h->op == kOpSwinBlock) {
      h->block = edgesr_swin_block_from_blob(processed->data(), processed->size());  // the native parser
      if (h->block) {
        int tokens = 0, dim = 0;
        edgesr_swin_block_shape(h->block, &tokens, &dim);
        h->tokens = static_cast<size_t>(tokens);
        h->dim = static_cast<size_t>(dim);
        h->workspace_floats = edgesr_swin_block_workspace_floats(h->block);
      }
      if (!h->block) {
        delete h;
        return Error::InvalidProgram;
      }
    } else {
      delete h;
      return Error::InvalidProgram;
    }
    processed->Free();  // everything needed now lives in the handle
    return h;
  }

  Error execute(BackendExecutionContext&, DelegateHandle* handle, Span<EValue*> args) const override {
    auto* h = static_cast<Handle*>(handle);
    if (h->op == kOpLinear) {
      if (args.size() != 2 || !args[0]->isTensor() || !args[1]->isTensor()) return Error::InvalidArgument;
      const auto& x = args[0]->toTensor();
      auto& y = args[1]->toTensor();
      if (x.dim() < 1 || x.size(x.dim() - 1) != h->k) return Error::InvalidArgument;
      int m = static_cast<int>(x.numel() / h->k);
      if (y.numel() != static_cast<ssize_t>(m) * h->n) return Error::InvalidArgument;
      edgesr_qlinear_run(h->linear, x.const_data_ptr<float>(), m, y.mutable_data_ptr<float>(), thread_count());
      return Error::Ok;
    }
    if (h->op == kOpAttention) return execute_attention(h, args);
    if (h->op == kOpSwinBlock) {
      if (args.size() != 2 || !args[0]->isTensor() || !args[1]->isTensor()) return Error::InvalidArgument;
      const auto& x = args[0]->toTensor();
      auto& y = args[1]->toTensor();
      const ssize_t want = static_cast<ssize_t>(h->tokens * h->dim);
      if (x.numel() != want || y.numel() != want) return Error::InvalidArgument;
      float* ws = block_workspace(h->workspace_floats);
      int rc = edgesr_swin_block_run(h->block, x.const_data_ptr<float>(), y.mutable_data_ptr<float>(), ws,
                                     thread_count());
      return rc == 0 ? Error::Ok : Error::InvalidState;
    }
    if (args.size() != 3 || !args[0]->isTensor() || !args[1]->isTensor() || !args[2]->isTensor())
      return Error::InvalidArgument;
    const auto& a = args[0]->toTensor();
    const auto& b = args[1]->toTensor();
    auto& out = args[2]->toTensor();
    if (a.dim() != 3 || b.dim() != 3 || out.dim() != 3) return Error::InvalidArgument;
    int batch = static_cast<int>(a.size(0)), m = static_cast<int>(a.size(1)), k = static_cast<int>(a.size(2));
    int n = static_cast<int>(h->b_transposed ? b.size(1) : b.size(2));
    int bk = static_cast<int>(h->b_transposed ? b.size(2) : b.size(1));
    if (b.size(0) != batch || bk != k || out.size(0) != batch || out.size(1) != m || out.size(2) != n)
      return Error::InvalidArgument;
    edgesr_qbmm(a.const_data_ptr<float>(), b.const_data_ptr<float>(), batch, m, k, n, h->b_transposed, h->a_lo,
                h->a_hi, h->b_lo, h->b_hi, h->bits, out.mutable_data_ptr<float>(), thread_count());
    return Error::Ok;
  }

  // args: q, k, v (G*heads, n, hd), bias (heads, n, n), [mask (nW, n, n)], out (G*heads, n, hd)
  static Error execute_attention(const Handle* h, Span<EValue*> args) {
    const size_t want = h->has_mask ? 6 : 5;
    if (args.size() != want) return Error::InvalidArgument;
    for (size_t i = 0; i < want; ++i)
      if (!args[i]->isTensor()) return Error::InvalidArgument;
    const auto& q = args[0]->toTensor();
    const auto& k = args[1]->toTensor();
    const auto& v = args[2]->toTensor();
    const auto& bias = args[3]->toTensor();
    auto& out = args[want - 1]->toTensor();
    if (q.dim() != 3 || q.numel() != k.numel() || q.numel() != v.numel() || out.numel() != q.numel())
      return Error::InvalidArgument;
    const int n = static_cast<int>(q.size(1)), hd = static_cast<int>(q.size(2));
    const int groups = static_cast<int>(q.size(0)) / h->heads;
    if (groups * h->heads != q.size(0) || bias.numel() != static_cast<ssize_t>(h->heads) * n * n)
      return Error::InvalidArgument;
    const float* mask = nullptr;
    int mask_windows = 1;
    if (h->has_mask) {
      const auto& m = args[4]->toTensor();
      mask = m.const_data_ptr<float>();
      mask_windows = static_cast<int>(m.numel() / (static_cast<ssize_t>(n) * n));
      if (mask_windows < 1 || groups % mask_windows) return Error::InvalidArgument;
    }
    int rc = edgesr_qattention(q.const_data_ptr<float>(), k.const_data_ptr<float>(), v.const_data_ptr<float>(),
                               groups, h->heads, n, hd, bias.const_data_ptr<float>(), mask, mask_windows, h->bounds,
                               h->bits, out.mutable_data_ptr<float>(), thread_count());
    return rc == 0 ? Error::Ok : Error::InvalidArgument;
  }

  void destroy(DelegateHandle* handle) const override {
    auto* h = static_cast<Handle*>(handle);
    if (h) {
      if (h->linear) edgesr_qlinear_destroy(h->linear);
      if (h->block) edgesr_swin_block_destroy(h->block);
      delete h;
    }
  }
};

EdgesrInt4Backend g_backend;
Backend g_entry{"EdgesrInt4Backend", &g_backend};
const auto g_registered = executorch::runtime::register_backend(g_entry);

}  // namespace

#define EDGESR_ET_API __attribute__((visibility("default")))

extern "C" {
// Kernel threads for every EdgesrInt4Backend call in this process (>= 1).
EDGESR_ET_API void edgesr_et_set_num_threads(int threads) {
  g_threads = threads > 0 ? threads : 1;
}
EDGESR_ET_API int edgesr_et_num_threads(void) {
  return thread_count();
}
}
