// Triangle meshes with per-corner texture coordinates, and the small
// geometric helpers the reconstruction, synthesis and rendering share.
//
// Conventions used across hfr:
//  - Model space: centimetres, right-handed, +y up, +z towards the viewer
//    (the face looks along +z), +x to the subject's left (the viewer's right).
//    Both MediaPipe's canonical face and the ICT FaceKit use this frame.
//  - Camera space (OpenCV): +x right, +y down, +z forward (into the scene).
//    A pose maps model to camera: X_cam = R * X_model + t. A frontal face
//    has R = diag(1, -1, -1) and t.z > 0.
//  - Pinhole intrinsics fx, fy, cx, cy in pixels; pixel centres at integer
//    coordinates + 0.5 (pixel (0,0) covers [0,1) x [0,1)).
//  - Texture coordinates: u right, v up (OpenGL / OBJ); texel (i, j) of a
//    W x H map covers u in [i/W, (i+1)/W), v in [1-(j+1)/H, 1-j/H)
//    (row 0 at the top, v = 1).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace hfr::mesh {

struct TriMesh {
  std::vector<float> positions;              // V x 3
  std::vector<std::int32_t> triangles;       // T x 3, indices into positions
  std::vector<float> uvs;                    // M x 2 (may be empty)
  std::vector<std::int32_t> uv_triangles;    // T x 3, indices into uvs (empty when no uvs)
  std::int64_t num_vertices() const { return static_cast<std::int64_t>(positions.size() / 3); }
  std::int64_t num_triangles() const { return static_cast<std::int64_t>(triangles.size() / 3); }
  // Throws hfr::Error naming `what` if an index is out of range or sizes disagree.
  void validate(const std::string& what) const;
};

// Area-weighted vertex normals (unit length; zero for unused vertices).
std::vector<float> vertex_normals(const std::vector<float>& positions, const std::vector<std::int32_t>& triangles);

struct Pinhole {
  double fx = 0, fy = 0, cx = 0, cy = 0;
};

struct Pose {
  std::array<double, 9> R{1, 0, 0, 0, 1, 0, 0, 0, 1};  // row-major, model -> camera
  std::array<double, 3> t{0, 0, 0};                    // cm
};

// Camera-space positions of model-space points.
std::vector<float> transform(const Pose& pose, const std::vector<float>& positions);
// Head angles in degrees of a model->camera rotation, relative to the frontal
// view R = diag(1, -1, -1) * Ry(yaw) * Rx(-pitch) * Rz(roll) (mesh.cpp): yaw (+ = the subject turns to their left, i.e. the face points to the
// image's right), pitch (+ = looking up), roll (+ = head tilted so that it
// appears rotated counter-clockwise in the image).
std::array<double, 3> yaw_pitch_roll(const Pose& pose);
Pose pose_from_angles(double yaw_deg, double pitch_deg, double roll_deg, std::array<double, 3> t);

}  // namespace hfr::mesh
