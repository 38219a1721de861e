// Linear 3D morphable face models: the ICT FaceKit (full head, 100 identity
// modes, 53 + 4 expression blendshapes) and, where the ICT data is absent,
// MediaPipe's canonical face mesh alone (468 vertices, no modes).
//
//   V = neutral + identity * a + expression * b
//
// a ~ N(0, I) (each ICT identity mode is already scaled by its standard
// deviation), b in [0, 1] (ARKit blendshape weights).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "hfr/canonical_face.hpp"
#include "hfr/mesh.hpp"

namespace hfr::morph {

struct Range {
  std::string name;
  std::int64_t v0 = 0, v1 = 0;  // vertices [v0, v1)
  std::int64_t t0 = 0, t1 = 0;  // triangles of TriMesh::triangles [t0, t1)
};

// A point on a triangle of a model's neutral mesh.
struct SurfacePoint {
  std::int32_t triangle = 0;
  float b0 = 1, b1 = 0, b2 = 0;
};

struct MorphableModel {
  std::string name;     // "ict-facekit" | "facemesh"
  std::string source;   // the directory or file it was read from
  std::string sha256;   // of the bytes read (identifies the data in outputs)
  mesh::TriMesh neutral;                      // triangulated (quads split a-b-c, a-c-d)
  std::vector<std::int32_t> triangle_polygon; // source polygon (OBJ 'f' record) per triangle
  Eigen::MatrixXf identity;    // 3V x K, row 3*v + c
  Eigen::MatrixXf expression;  // 3V x E
  std::vector<std::string> expression_names;  // E
  std::vector<Range> regions;  // ICT: "face", "head_neck", ... (regions.json); facemesh: "face"
  std::vector<std::int32_t> landmarks68;      // multi-PIE 68 vertex indices (ICT); empty otherwise
  bool uv_mirror_u = false;    // the face's UV layout is mirror-symmetric about u = 0.5
  const Range* region(const std::string& name) const;  // nullptr if absent
};

// Reads the ICT FaceKit from a directory in either layout:
//  - repacked: neutral.obj, identities_f16.npy [100,V,3], expressions_f16.npy
//    [E,V,3], expressions.json, regions.json (the layout of hfr's test data);
//  - source (a checkout of github.com/ICT-VGL/ICT-FaceKit, folder FaceXModel/
//    or its parent): generic_neutral_mesh.obj, identity000.obj ... identity099.obj,
//    one OBJ per expression named in vertex_indices.json.
// Everything is validated (counts, indices, finite values, npy headers);
// errors name the file and line.
// What to read: a tool that only poses expressions (hfr-render) can skip the
// identity modes (K = 0) and the checksum (sha256 empty) of the repacked
// layout, a third of its start-up; the source layout is always read whole.
struct IctLoadOptions {
  bool identities = true;
  bool checksum = true;
};
MorphableModel load_ict_facekit(const std::string& dir, const IctLoadOptions& options = {});

// The canonical face as a model without modes (K = E = 0).
MorphableModel facemesh_model(const CanonicalFace& face, const std::string& source, const std::string& sha256);

// Where the ICT FaceKit is: `explicit_dir` if not empty (must exist), else
// $HFR_ICT_FACEKIT, else <install prefix>/share/hfr/ict-facekit; "" if none.
std::string find_ict_facekit(const std::string& explicit_dir);

// Model-space positions for coefficients a (K) and b (E); sizes may be
// shorter than K / E (missing = 0).
std::vector<float> evaluate(const MorphableModel& m, const Eigen::VectorXf& a, const Eigen::VectorXf& b);

// The texture coordinates (u, v) of a surface point of the model's mesh.
std::array<float, 2> uv_of(const MorphableModel& m, const SurfacePoint& p);

// A model-space point on the mesh given by positions.
Eigen::Vector3f point_on(const std::vector<float>& positions, const mesh::TriMesh& topology, const SurfacePoint& p);

}  // namespace hfr::morph
