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

local function model_dirs(settings)
  if settings.modelDir and settings.modelDir ~= '' then
    return { settings.modelDir }
  end
  local root = vim.env.OSS_EDGE_HOME and (vim.env.OSS_EDGE_HOME .. '/data/models')
    or ((vim.env.XDG_DATA_HOME or (vim.env.HOME .. '/.local/share')) .. '/oss-edge/models')
  local found = {}
  for _, path in ipairs(vim.fn.glob(root .. '/*/manifest.json', false, true)) do
    table.insert(found, vim.fn.fnamemodify(path, ':h'))
  end
  return found
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

  local models = model_dirs(options.settings or {})
  if #models == 0 then
    health.error('no model folder found', {
      'Run `oss-edge export` (downloads and converts gpt-oss-20b once)',
      "or set settings.modelDir to a folder made by `oss-edge export`",
    })
    return
  end
  local model = models[1]
  if vim.fn.filereadable(model .. '/genai_config.json') == 1 then
    health.ok('model folder ' .. model)
  else
    health.error(model .. ' is not a model folder', { 'Export one with `oss-edge export`, then set settings.modelDir' })
    return
  end

  local status_cmd = { cmd[1], 'status', '--model', model }
  if options.settings and options.settings.runtimeSocket and options.settings.runtimeSocket ~= '' then
    status_cmd = { cmd[1], 'status', '--socket', options.settings.runtimeSocket }
  end
  local status = run(status_cmd)
  if status and status.code == 0 then
    local ok, decoded = pcall(vim.json.decode, status.stdout)
    if ok then
      health.ok(string.format('the model is loaded (%s, %.2f GB resident, %s requests served)',
        decoded.provider, decoded.memory.rss_bytes / 1e9, decoded.cache.requests))
    else
      health.ok('the model is loaded')
    end
  else
    health.info('the model is not loaded yet: it starts with the first buffer oss-edge attaches to')
  end
end

return M
