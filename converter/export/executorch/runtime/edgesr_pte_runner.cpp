// edgesr_pte_runner.h on ExecuTorch's core runtime API (Program / Method / MemoryManager): no extension library
// beyond the thread pool, so the same file builds against the pip wheel's headers (tested on x86 from Python) and
// inside an app that builds the ExecuTorch runtime from source.
#include "edgesr_pte_runner.h"

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include <executorch/extension/threadpool/threadpool.h>
#include <executorch/runtime/core/data_loader.h>
#include <executorch/runtime/core/error.h>
#include <executorch/runtime/core/evalue.h>
#include <executorch/runtime/core/hierarchical_allocator.h>
#include <executorch/runtime/core/memory_allocator.h>
#include <executorch/runtime/executor/memory_manager.h>
#include <executorch/runtime/executor/method.h>
#include <executorch/runtime/executor/method_meta.h>
#include <executorch/runtime/executor/program.h>
#include <executorch/runtime/platform/runtime.h>

using executorch::runtime::DataLoader;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::FreeableBuffer;
using executorch::runtime::HierarchicalAllocator;
using executorch::runtime::MemoryAllocator;
using executorch::runtime::MemoryManager;
using executorch::runtime::Method;
using executorch::runtime::MethodMeta;
using executorch::runtime::Program;
using executorch::runtime::Result;
using executorch::runtime::Span;

extern "C" void edgesr_et_set_num_threads(int threads);  // edgesr_int4_backend.cpp

namespace {

constexpr const char* kMetadataMethod = "edgesr_metadata";  // converter/export/executorch/lower.py

void say(char* err, size_t len, const char* fmt, ...) {
  if (!err || !len) return;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(err, len, fmt, ap);
  va_end(ap);
}

// The whole file in one 64-byte aligned block; segments are views into it.
class BufferLoader final : public DataLoader {
 public:
  BufferLoader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  Result<FreeableBuffer> load(size_t offset, size_t size, const SegmentInfo&) const override {
    if (offset > size_ || size > size_ - offset) return Error::InvalidArgument;
    return FreeableBuffer(data_ + offset, size, nullptr);
  }
  Result<size_t> size() const override { return size_; }

 private:
  const uint8_t* data_;
  size_t size_;
};

struct AlignedFree {
  void operator()(uint8_t* p) const { std::free(p); }
};
using Bytes = std::unique_ptr<uint8_t[], AlignedFree>;

Bytes aligned_bytes(size_t n) {
  n = (n + 63) / 64 * 64;
  return Bytes(static_cast<uint8_t*>(std::aligned_alloc(64, n ? n : 64)));
}

// One loaded method and the memory it runs in. The method allocator's pool grows (doubling) until the load
// fits: its need depends on the delegates' handles, which only loading reveals.
struct LoadedMethod {
  std::vector<Bytes> planned;
  std::vector<Span<uint8_t>> spans;
  std::unique_ptr<HierarchicalAllocator> planned_alloc;
  Bytes method_pool, temp_pool;
  std::unique_ptr<MemoryAllocator> method_alloc, temp_alloc;
  std::unique_ptr<MemoryManager> memory;
  std::unique_ptr<Method> method;

  Error load(const Program& program, const char* name) {
    Result<MethodMeta> meta = program.method_meta(name);
    if (!meta.ok()) return meta.error();
    for (size_t i = 0; i < meta->num_memory_planned_buffers(); ++i) {
      const size_t n = static_cast<size_t>(meta->memory_planned_buffer_size(i).get());
      planned.push_back(aligned_bytes(n));
      if (!planned.back()) return Error::MemoryAllocationFailed;
      spans.emplace_back(planned.back().get(), n);
    }
    planned_alloc = std::make_unique<HierarchicalAllocator>(Span<Span<uint8_t>>(spans.data(), spans.size()));
    for (uint32_t pool = 1u << 20; pool <= (1u << 30); pool *= 2) {
      method_pool = aligned_bytes(pool);
      temp_pool = aligned_bytes(pool);
      if (!method_pool || !temp_pool) return Error::MemoryAllocationFailed;
      method_alloc = std::make_unique<MemoryAllocator>(pool, method_pool.get());
      temp_alloc = std::make_unique<MemoryAllocator>(pool, temp_pool.get());
      memory = std::make_unique<MemoryManager>(method_alloc.get(), planned_alloc.get(), temp_alloc.get());
      Result<Method> m = program.load_method(name, memory.get());
      if (m.ok()) {
        method = std::make_unique<Method>(std::move(m.get()));
        return Error::Ok;
      }
      if (m.error() != Error::MemoryAllocationFailed) return m.error();
    }
    return Error::MemoryAllocationFailed;
  }
};

std::mutex g_mutex;
int g_open = 0;  // handles alive: the XNNPACK pool may only be resized while none is

// Two accessors 1.4.1 marks deprecated are used on purpose: resizing the pool (what the Python bindings do too;
// the guard API it suggests only lowers the count per call) and, below, writing the input in place.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
void set_threads(int threads) {
  edgesr_et_set_num_threads(threads);
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool && g_open == 0 && pool->get_thread_count() != static_cast<size_t>(threads))
    pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads));
}

// forward's input tensor (memory-planned, so its buffer is the method's own), or null. set_input would need a
// TensorImpl of our own, whose constructor the pip wheel's runtime does not export.
EValue planned_input(Method& method) {
  EValue input;
  if (method.get_inputs(&input, 1) != Error::Ok || !input.isTensor() || !input.toTensor().mutable_data_ptr())
    return EValue();
  return input;
}
#pragma GCC diagnostic pop

}  // namespace

struct edgesr_pte {
  Bytes file;
  std::unique_ptr<BufferLoader> loader;
  std::unique_ptr<Program> program;
  LoadedMethod forward;
  std::string metadata;
  int in_shape[4] = {0, 0, 0, 0}, out_shape[4] = {0, 0, 0, 0};
  size_t in_bytes = 0, out_bytes = 0;
};

extern "C" {

edgesr_pte* edgesr_pte_open(const char* path, int threads, char* err, size_t err_len) {
  static std::once_flag init;
  std::call_once(init, [] { executorch::runtime::runtime_init(); });
  if (!path) {
    say(err, err_len, "no model path");
    return nullptr;
  }
  std::FILE* f = std::fopen(path, "rb");
  if (!f) {
    say(err, err_len, "%s: cannot open: %s", path, std::strerror(errno));
    return nullptr;
  }
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  std::unique_ptr<edgesr_pte> m(new (std::nothrow) edgesr_pte());
  if (!m || size <= 0 || !(m->file = aligned_bytes(static_cast<size_t>(size))) ||
      std::fread(m->file.get(), 1, static_cast<size_t>(size), f) != static_cast<size_t>(size)) {
    std::fclose(f);
    say(err, err_len, "%s: cannot read the file (empty, unreadable or out of memory)", path);
    return nullptr;
  }
  std::fclose(f);
  if (size < 8 || std::memcmp(m->file.get() + 4, "ET12", 4) != 0) {
    say(err, err_len, "%s: not an ExecuTorch program (.pte): missing the ET12 identifier", path);
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  set_threads(threads > 0 ? threads : 1);
  m->loader = std::make_unique<BufferLoader>(m->file.get(), static_cast<size_t>(size));
  Result<Program> program = Program::load(m->loader.get(), Program::Verification::InternalConsistency);
  if (!program.ok()) {
    say(err, err_len, "%s: cannot load the program (truncated or corrupt .pte?): %s", path,
        executorch::runtime::to_string(program.error()));
    return nullptr;
  }
  m->program = std::make_unique<Program>(std::move(program.get()));

  LoadedMethod meta;  // the descriptor: a constant method returning one string
  Error e = meta.load(*m->program, kMetadataMethod);
  if (e == Error::Ok) e = meta.method->execute();
  const EValue* value = e == Error::Ok && meta.method->outputs_size() == 1 ? &meta.method->get_output(0) : nullptr;
  if (!value || !value->isString()) {
    say(err, err_len, "%s: not exported by edgesr (no %s method)", path, kMetadataMethod);
    return nullptr;
  }
  m->metadata = std::string(value->toString());

  e = m->forward.load(*m->program, "forward");
  if (e != Error::Ok) {
    say(err, err_len, "%s: cannot initialise the forward method (is every backend it uses linked in?): %s", path,
        executorch::runtime::to_string(e));
    return nullptr;
  }
  const MethodMeta fmeta = m->forward.method->method_meta();
  if (fmeta.num_inputs() != 1 || fmeta.num_outputs() != 1) {
    say(err, err_len, "%s: forward takes %zu inputs and returns %zu outputs, expected 1 and 1", path,
        fmeta.num_inputs(), fmeta.num_outputs());
    return nullptr;
  }
  auto in = fmeta.input_tensor_meta(0);
  auto out = fmeta.output_tensor_meta(0);
  if (!in.ok() || !out.ok() || in->sizes().size() != 4 || out->sizes().size() != 4 ||
      in->scalar_type() != executorch::aten::ScalarType::Float ||
      out->scalar_type() != executorch::aten::ScalarType::Float) {
    say(err, err_len, "%s: forward is not float32 NCHW in and out", path);
    return nullptr;
  }
  for (int i = 0; i < 4; ++i) {
    m->in_shape[i] = in->sizes()[i];
    m->out_shape[i] = out->sizes()[i];
  }
  m->in_bytes = in->nbytes();
  m->out_bytes = out->nbytes();
  ++g_open;
  return m.release();
}

const char* edgesr_pte_metadata(const edgesr_pte* model) { return model ? model->metadata.c_str() : ""; }

void edgesr_pte_shapes(const edgesr_pte* model, int in_shape[4], int out_shape[4]) {
  for (int i = 0; i < 4; ++i) {
    if (in_shape) in_shape[i] = model ? model->in_shape[i] : 0;
    if (out_shape) out_shape[i] = model ? model->out_shape[i] : 0;
  }
}

int edgesr_pte_run(edgesr_pte* model, const float* in, float* out, char* err, size_t err_len) {
  if (!model || !in || !out) {
    say(err, err_len, "edgesr_pte_run: null argument");
    return 1;
  }
  Method& method = *model->forward.method;
  EValue input = planned_input(method);
  if (!input.isTensor()) {
    say(err, err_len, "forward's input is not a memory-planned tensor");
    return 1;
  }
  std::memcpy(input.toTensor().mutable_data_ptr(), in, model->in_bytes);
  const Error e = method.execute();
  if (e != Error::Ok) {
    say(err, err_len, "forward failed: %s", executorch::runtime::to_string(e));
    return 1;
  }
  const EValue& output = method.get_output(0);
  if (!output.isTensor()) {
    say(err, err_len, "forward's output is not a tensor");
    return 1;
  }
  std::memcpy(out, output.toTensor().const_data_ptr(), model->out_bytes);
  return 0;
}

void edgesr_pte_close(edgesr_pte* model) {
  if (!model) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  --g_open;
  delete model;
}

}  // extern "C"
