-- :checkhealth oss_edge — each problem is followed by what to do.
local M = {}

local function run(cmd)
  local ok, result = pcall(function()
    return vim.system(cmd, { text = true }):wait(20000)
  end)
  if not ok then
    return nil, tostring(result)
  end
  return result
end

function M.check()
  local health = vim.health
  local options = require('oss_edge.config').options
  health.start('oss-edge')
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.11 or newer is needed', { 'Upgrade Neovim (vim.lsp.config and vim.lsp.enable are 0.11+)' })
  end
  if vim.lsp.inline_completion then
    health.ok('inline completion (ghost text) is available')
  else
    health.info('this Neovim has no inline completion UI: suggestions come as completion items (<C-x><C-o>)')
  end

  local cmd = options.cmd
  if vim.fn.executable(cmd[1]) ~= 1 then
    health.error(cmd[1] .. ' is not executable', {
      'Install oss-edge (pip install oss-edge, or `make setup` in a clone) and put it on PATH',
      "or point the plugin at it: require('oss_edge').setup{ cmd = { '/path/to/oss-edge', 'lsp' } }",
    })
    return
  end
  local version = run({ cmd[1], '--version' })
  if version and version.code == 0 then
    health.ok(vim.trim(version.stdout))
  else
    health.error(cmd[1] .. ' --version failed', { 'Reinstall oss-edge; run it by hand to see the error' })
    return
  end

  -- the CLI says which model the server would serve and whether its daemon runs: the plugin repeats none of it
  local settings = options.settings or {}
  local doctor_cmd = { cmd[1], 'doctor', '--json' }
  if settings.modelDir and settings.modelDir ~= '' then
    vim.list_extend(doctor_cmd, { '--model', settings.modelDir })
  end
  if settings.runtimeSocket and settings.runtimeSocket ~= '' then
    vim.list_extend(doctor_cmd, { '--socket', settings.runtimeSocket })
  end
  local doctor = run(doctor_cmd)
  local ok, report = pcall(vim.json.decode, doctor and doctor.stdout or '')
  if not ok or type(report) ~= 'table' then
    health.error(table.concat(doctor_cmd, ' ') .. ' failed', { 'Run it by hand to see the error' })
    return
  end
  local model = report.model
  if model.path == vim.NIL or model.path == nil then
    health.error('no model folder found', {
      'Run `oss-edge export` (downloads and converts gpt-oss-20b once)',
      "or set settings.modelDir to a folder made by `oss-edge export`",
    })
    return
  end
  if model.problem ~= vim.NIL and model.problem then
    health.error(model.problem, { 'Export one with `oss-edge export`, then set settings.modelDir' })
    return
  end
  health.ok(string.format('model folder %s (%s)', model.path, model.chosen))
  local daemon = report.daemon
  if daemon.running then
    local status = daemon.status
    health.ok(string.format('the model is loaded (%s, %.2f GB resident, %s requests served)',
      status.provider, status.memory.rss_bytes / 1e9, status.cache.requests))
  elseif daemon.problem ~= vim.NIL and daemon.problem then
    health.warn('the daemon: ' .. daemon.problem)
  else
    health.info('the model is not loaded yet: it starts with the first buffer oss-edge attaches to')
  end
end

return M
