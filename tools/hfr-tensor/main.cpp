// hfr-tensor: inspect, verify, convert and export hfr tensor files.
#include <cstring>
#include <map>

#include "hfr/cli.hpp"
#include "hfr/error.hpp"
#include "hfr/io.hpp"
#include "hfr/log.hpp"
#include "hfr/npy.hpp"
#include "hfr/records.hpp"
#include "hfr/tensorfile.hpp"

namespace {
using hfr::cli::Complete;
using json = nlohmann::json;

hfr::cli::ToolSpec spec() {
  hfr::cli::ToolSpec s;
  s.name = "hfr-tensor";
  s.summary = "inspect, verify, convert and export hfr tensor files";
  s.synopsis = {"info [OPTION]... [FILE]", "verify [OPTION]... FILE...", "cat [OPTION]... [FILE]",
                "export --tensor=NAME [OPTION]... [FILE]", "import [OPTION]... [NAME=]ARRAY.npy..."};
  s.description = {
      "Works on hfr tensor files (.hft, see hfr-formats(5)), the container every hfr tool uses for embeddings, meshes, "
      "textures, score matrices and model weights. FILE may be - (the default) to read a stream from a pipe.",
      "info lists the metadata and tensors (name, dtype, shape, bytes); with --json as JSON-lines records. "
      "verify decodes every chunk and checks every checksum, the index and the trailer; it prints FILE: OK or the first problem. "
      "cat re-encodes a tensor file chunk by chunk (from a pipe too), optionally at another compression level or with floating-point "
      "tensors converted to --dtype. export writes one tensor as a NumPy .npy file (bf16 becomes float32). "
      "import packs .npy files into a tensor file; each tensor is named after its file unless NAME= is given.",
  };
  s.reads = "hfr tensor files (info, verify, cat, export) or NumPy .npy files (import); - is stdin.";
  s.writes = "text or JSON lines (info, verify), a tensor file (cat, import) or a .npy file (export) to -o FILE or stdout; "
             "files are written atomically, and binary data is not written to a terminal.";
  s.positionals = {{"COMMAND", "What to do.", Complete::choices, {"info", "verify", "cat", "export", "import"}, true, false},
                   {"FILE", "Input files; - or none is stdin.", Complete::file, {}, false, true}};
  s.options = {
      {"output", 'o', "FILE", "Write here instead of stdout.", "-", {}, Complete::file},
      {"tensor", 0, "NAME", "Tensor to export.", "", {}, Complete::none},
      {"json", 0, "", "info: print JSON-lines records instead of text.", "", {}, Complete::none},
      {"level", 'l', "N", "zstd compression level for cat and import, 1..19; 0 stores uncompressed.", "3", {}, Complete::none},
      {"dtype", 0, "TYPE", "cat, import: convert floating-point tensors to this type.", "", {"f32", "f16", "bf16"}, Complete::choices},
      {"metadata", 0, "JSON", "import: metadata of the new file, a JSON object.", "", {}, Complete::none},
      {"force", 'f', "", "Write binary data even to a terminal.", "", {}, Complete::none},
  };
  s.examples = {
      {"hfr-tensor info gallery.hft", "List the tensors and metadata of an embedding set."},
      {"hfr-tensor cat --dtype f16 gallery.hft -o gallery16.hft", "Halve the size of an embedding set."},
      {"hfr-tensor export --tensor embeddings gallery.hft -o gallery.npy", "Hand embeddings to NumPy: numpy.load('gallery.npy')."},
      {"hfr-tensor import emb=gallery.npy -o gallery.hft", "Pack a NumPy array into a tensor file."},
  };
  s.see_also = {"hfr-embed(1)", "hfr-match(1)"};
  return s;
}

bool is_float(hfr::DType t) { return t == hfr::DType::f32 || t == hfr::DType::f16 || t == hfr::DType::bf16; }


// Converts n floating-point values between f32/f16/bf16.
std::vector<unsigned char> convert(hfr::DType from, hfr::DType to, const unsigned char* src, std::uint64_t n) {
  std::vector<unsigned char> out(n * hfr::dtype_size(to));
  std::size_t fs = hfr::dtype_size(from);
  for (std::uint64_t i = 0; i < n; ++i) {
    float f = hfr::load_float32(from, src + i * fs);
    if (to == hfr::DType::f32) std::memcpy(&out[i * 4], &f, 4);
    else {
      std::uint16_t h = to == hfr::DType::f16 ? hfr::float_to_half(f) : hfr::float_to_bfloat16(f);
      std::memcpy(&out[i * 2], &h, 2);
    }
  }
  return out;
}

std::vector<std::string> inputs(const hfr::cli::Args& a) {
  std::vector<std::string> v(a.positionals().begin() + 1, a.positionals().end());
  if (v.empty()) v.push_back("-");
  return v;
}

std::string single_input(const hfr::cli::Args& a) {
  auto v = inputs(a);
  if (v.size() != 1) throw hfr::UsageError(a.positionals()[0] + " takes one input file");
  return v[0];
}

int cmd_info(const hfr::cli::Args& a) {
  auto in = hfr::io::open_input(single_input(a));
  hfr::TensorReader r(*in);
  if (!r.random_access()) {  // a pipe: stream through it to learn the shapes
    hfr::TensorChunk c;
    while (r.next(c)) {
    }
  }
  auto out = hfr::io::open_output(a.str("output"));
  if (a.flag("json")) {
    hfr::RecordWriter w(*out);
    w.write(hfr::Record{{"type", "file"}, {"path", in->name()}, {"metadata", r.metadata()}});
    for (const auto& t : r.tensors())
      w.write(hfr::Record{{"type", "tensor"}, {"name", t.name}, {"dtype", hfr::dtype_name(t.dtype)}, {"shape", t.shape}, {"bytes", t.nbytes()}});
  } else {
    out->write(in->name() + "\n");
    out->write("metadata: " + r.metadata().dump() + "\n");
    for (const auto& t : r.tensors())
      out->write("  " + t.name + "  " + hfr::dtype_name(t.dtype) + " " + hfr::shape_string(t.shape) + "  " + std::to_string(t.nbytes()) + " bytes\n");
  }
  out->commit();
  return hfr::kExitOk;
}

int cmd_verify(const hfr::cli::Args& a) {
  auto out = hfr::io::open_output(a.str("output"));
  int failed = 0;
  for (const auto& path : inputs(a)) {
    try {
      auto in = hfr::io::open_input(path);
      auto infos = hfr::verify_tensor_file(*in);
      out->write(in->name() + ": OK (" + std::to_string(infos.size()) + " tensors)\n");
    } catch (const hfr::Error& e) {
      ++failed;
      out->write(path + ": FAILED\n");
      hfr::log::error(e.what());
    }
  }
  out->commit();
  return failed ? hfr::kExitFailure : hfr::kExitOk;
}

hfr::TensorWriterOptions writer_options(const hfr::cli::Args& a) {
  hfr::TensorWriterOptions o;
  o.level = static_cast<int>(a.integer("level", 0, 19));
  o.threads = a.common().threads;
  return o;
}

int cmd_cat(const hfr::cli::Args& a) {
  auto in = hfr::io::open_input(single_input(a));
  hfr::TensorReader r(*in);
  auto out = hfr::io::open_output(a.str("output"), {hfr::io::Content::binary, a.flag("force")});
  hfr::TensorWriter w(*out, writer_options(a));
  bool convert_to = a.given("dtype");
  hfr::DType target = convert_to ? hfr::parse_dtype(a.str("dtype")) : hfr::DType::f32;
  std::string meta_written = "{}";
  std::map<std::string, hfr::DType> begun;
  auto sync_meta = [&] {
    std::string m = r.metadata().dump();
    if (m != meta_written) {
      w.set_metadata(r.metadata());
      meta_written = m;
    }
  };
  hfr::TensorChunk c;
  while (r.next(c)) {
    sync_meta();
    const hfr::TensorInfo& t = *c.tensor;
    hfr::DType dt = convert_to && is_float(t.dtype) ? target : t.dtype;
    std::vector<unsigned char> conv;
    const unsigned char* data = c.data;
    if (dt != t.dtype) {
      conv = convert(t.dtype, dt, c.data, c.bytes / hfr::dtype_size(t.dtype));
      data = conv.data();
    }
    if (t.shape.empty()) {
      w.write(t.name, dt, {}, data);
      continue;
    }
    if (!begun.count(t.name)) {
      w.begin(t.name, dt, hfr::Shape(t.shape.begin() + 1, t.shape.end()));
      begun[t.name] = dt;
    }
    w.append(t.name, data, c.rows);
  }
  sync_meta();
  w.close();
  out->commit();
  return hfr::kExitOk;
}

int cmd_export(const hfr::cli::Args& a) {
  if (!a.given("tensor")) throw hfr::UsageError("export needs --tensor=NAME");
  auto in = hfr::io::open_input(single_input(a));
  hfr::TensorReader r(*in);
  std::string name = a.str("tensor");
  hfr::Tensor t;
  if (r.random_access()) {
    t = r.read(name);
  } else {
    bool found = false;
    for (auto& x : r.read_all())
      if (x.info.name == name) {
        t = std::move(x);
        found = true;
      }
    if (!found) throw hfr::FormatError(in->name() + ": no tensor named '" + name + "'");
  }
  auto out = hfr::io::open_output(a.str("output"), {hfr::io::Content::binary, a.flag("force")});
  hfr::write_npy(*out, t.info, t.ptr());
  out->commit();
  return hfr::kExitOk;
}

int cmd_import(const hfr::cli::Args& a) {
  std::vector<std::string> args(a.positionals().begin() + 1, a.positionals().end());
  if (args.empty()) throw hfr::UsageError("import needs at least one .npy file");
  json meta = json::object();
  if (a.given("metadata")) {
    try {
      meta = json::parse(a.str("metadata"));
    } catch (const json::exception&) {
      throw hfr::UsageError("--metadata is not valid JSON");
    }
    if (!meta.is_object()) throw hfr::UsageError("--metadata must be a JSON object");
  }
  std::vector<hfr::Tensor> tensors;
  for (const auto& arg : args) {
    std::string name, path = arg;
    auto eq = arg.find('=');
    if (eq != std::string::npos) {
      name = arg.substr(0, eq);
      path = arg.substr(eq + 1);
    } else {
      auto slash = path.find_last_of('/');
      name = slash == std::string::npos ? path : path.substr(slash + 1);
      auto dot = name.find_last_of('.');
      if (dot != std::string::npos && dot > 0) name = name.substr(0, dot);
    }
    auto in = hfr::io::open_input(path);
    tensors.push_back(hfr::read_npy(*in, name));
  }
  auto out = hfr::io::open_output(a.str("output"), {hfr::io::Content::binary, a.flag("force")});
  hfr::TensorWriter w(*out, writer_options(a));
  if (!meta.empty()) w.set_metadata(meta);
  bool convert_to = a.given("dtype");
  for (auto& t : tensors) {
    if (convert_to && is_float(t.info.dtype)) {
      hfr::DType to = hfr::parse_dtype(a.str("dtype"));
      auto conv = convert(t.info.dtype, to, static_cast<const unsigned char*>(t.ptr()), hfr::shape_numel(t.info.shape));
      w.write(t.info.name, to, t.info.shape, conv.data());
    } else {
      w.write(t);
    }
  }
  w.close();
  out->commit();
  return hfr::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  return hfr::cli::run(spec(), argc, argv, [](const hfr::cli::Args& a) {
    const std::string& cmd = a.positionals()[0];
    if (cmd == "info") return cmd_info(a);
    if (cmd == "verify") return cmd_verify(a);
    if (cmd == "cat") return cmd_cat(a);
    if (cmd == "export") return cmd_export(a);
    return cmd_import(a);
  });
}
