#include "hfr/inputs.hpp"

#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "hfr/error.hpp"
#include "hfr/image.hpp"
#include "hfr/io.hpp"

namespace hfr::inputs {
namespace {

namespace fs = std::filesystem;

bool matches(const std::vector<std::string>& pats, const std::string& rel) {
  for (const auto& p : pats)
    if (fnmatch(p.c_str(), rel.c_str(), 0) == 0 || fnmatch(p.c_str(), fs::path(rel).filename().c_str(), 0) == 0) return true;
  return false;
}

bool dropped(const Spec& o, const std::string& k) {
  return std::find(o.drop_fields.begin(), o.drop_fields.end(), k) != o.drop_fields.end();
}

void add_records(const Spec& o, io::Input& in, const std::string& base_dir, std::vector<Item>& items) {
  RecordReader rr(in);
  Record r;
  std::string err;
  while (rr.next(r, &err)) {
    Item it;
    const std::string where = rr.where();
    if (r.is_null()) {
      it.id = where;
      it.error = err;
      items.push_back(std::move(it));
      continue;
    }
    it.subject = field_text(r, o.subject_field);
    for (auto f = r.begin(); f != r.end(); ++f)
      if (f.key() != o.path_field && f.key() != o.id_field && f.key() != o.subject_field && !dropped(o, f.key()))
        it.extra[f.key()] = f.value();
    if (!r.contains(o.path_field) || !r[o.path_field].is_string() || r[o.path_field].get<std::string>().empty()) {
      it.id = r.contains(o.id_field) && r[o.id_field].is_string() ? r[o.id_field].get<std::string>() : where;
      it.error = where + ": record has no string field \"" + o.path_field + "\"";
      items.push_back(std::move(it));
      continue;
    }
    std::string p = r[o.path_field].get<std::string>();
    it.path = resolve_ref(p, base_dir);
    it.id = r.contains(o.id_field) && r[o.id_field].is_string() ? r[o.id_field].get<std::string>() : p;
    items.push_back(std::move(it));
  }
}

}  // namespace

std::vector<Item> enumerate(const Spec& o) {
  std::vector<Item> items;
  for (const auto& in : o.inputs) {
    if (in == "-") {
      auto s = io::open_input("-");
      add_records(o, *s, "", items);
      continue;
    }
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<std::string> rels;
      fs::recursive_directory_iterator it(in, fs::directory_options::skip_permission_denied, ec), end;
      if (ec) throw Error(in + ": " + ec.message());
      for (; it != end; it.increment(ec)) {
        if (ec) throw Error(in + ": " + ec.message());
        if (!it->is_regular_file(ec)) continue;
        std::string rel = fs::relative(it->path(), in, ec).generic_string();
        if (!is_image_path(rel)) continue;
        if (!o.include.empty() && !matches(o.include, rel)) continue;
        if (matches(o.exclude, rel)) continue;
        rels.push_back(rel);
      }
      std::sort(rels.begin(), rels.end());
      for (const auto& rel : rels) {
        Item item;
        item.path = (fs::path(in) / rel).string();
        item.id = rel;
        auto slash = rel.find('/');
        if (slash != std::string::npos) item.subject = rel.substr(0, slash);
        items.push_back(std::move(item));
      }
      continue;
    }
    if (is_image_path(in) || !fs::exists(in)) {  // a missing file is a per-item error
      Item item;
      item.path = in;
      item.id = in;
      items.push_back(std::move(item));
      continue;
    }
    auto s = io::open_input(in);
    add_records(o, *s, records_folder(in), items);
  }
  return items;
}

std::string records_folder(const std::string& records_path) {
  return records_path == "-" ? std::string() : fs::path(records_path).parent_path().string();
}

std::string resolve_ref(const std::string& ref, const std::string& folder) {
  return fs::path(ref).is_absolute() || folder.empty() ? ref : (fs::path(folder) / ref).string();
}

std::string field_text(const Record& r, const std::string& field) {
  const auto f = r.find(field);
  if (f == r.end() || f->is_null()) return {};
  return f->is_string() ? f->get<std::string>() : f->dump();
}

std::string relative_ref(const std::string& path, const std::string& records_path, bool keep_absolute) {
  if (records_path == "-") return path;
  if (keep_absolute && fs::path(path).is_absolute()) return fs::path(path).lexically_normal().string();
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec).lexically_normal();
  struct stat st {};
  if (::stat(records_path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) return abs.string();  // a pipe or device
  fs::path base = fs::absolute(fs::path(records_path), ec).lexically_normal().parent_path();
  fs::path rel = fs::relative(abs, base, ec);
  return ec || rel.empty() ? abs.string() : rel.generic_string();
}

Record base_record(const Item& item, const std::string& records_path) {
  Record base = Record::object();
  base["id"] = item.id;
  if (!item.path.empty()) base["path"] = relative_ref(item.path, records_path, true);
  if (!item.subject.empty()) base["subject"] = item.subject;
  for (auto it = item.extra.begin(); it != item.extra.end(); ++it) base[it.key()] = it.value();
  return base;
}

std::string describe(const Item& item, const std::string& error) {
  if (!item.path.empty() && error.rfind(item.path + ":", 0) == 0) return error;
  return item.id + ": " + error;
}

std::string file_stem(const std::string& id) {
  std::string s;
  for (char c : id) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  while (!s.empty() && s.front() == '.') s.erase(0, 1);
  if (s.empty()) s = "face";
  return s.substr(0, 200);
}

}  // namespace hfr::inputs

namespace hfr {

// (here rather than in image.cpp: listing inputs needs no image codecs)
bool is_image_path(const std::string& path) {
  auto dot = path.find_last_of('.');
  if (dot == std::string::npos) return false;
  std::string e = path.substr(dot + 1);
  for (auto& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const char* exts[] = {"jpg", "jpeg", "png", "pgm", "ppm", "pbm", "pnm", "bmp", "gif", "tif", "tiff", "webp"};
  return std::find_if(std::begin(exts), std::end(exts), [&](const char* x) { return e == x; }) != std::end(exts);
}

}  // namespace hfr
