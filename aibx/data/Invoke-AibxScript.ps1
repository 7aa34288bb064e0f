<#
.SYNOPSIS
    Runs one customizer script for aibx, directly or elevated through a scheduled task.

.DESCRIPTION
    aibx uploads this file and the customizer's script, then runs
        powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File <this file> -ScriptPath <script>
    with -RunAs User (runElevated) or -RunAs System (runAsSystem) when the template asks for elevation.

    Exit code: the script's own `exit N`; otherwise $LASTEXITCODE of the last native command it ran (0 if none);
    1 when a terminating error stopped it (the error and its position go to stderr). The same rule applies
    elevated: the exit code is the scheduled task's last result.

    Elevated, the script runs in a scheduled task with the highest privileges, as the connecting user (-RunAs
    User, logon type S4U: no password is stored or sent) or as SYSTEM (-RunAs System). Its stdout and stderr go
    to two files that this wrapper copies to its own stdout and stderr while the task runs, so they stay
    separate. Every wait is bounded: the task must start within -StartTimeoutSeconds and finish within
    -TimeoutSeconds (then it is stopped). The task and the output files are removed whatever happens.

    Lines starting with "aibx:" on stderr are the wrapper's own messages.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string] $ScriptPath,

    [ValidateSet('None', 'User', 'System')]
    [string] $RunAs = 'None',

    # the scheduled task's name (elevated only)
    [string] $TaskName = '',

    # how long the elevated script may run
    [ValidateRange(1, 2147483)]
    [int] $TimeoutSeconds = 14400,

    # how long the scheduled task may take to start
    [ValidateRange(1, 3600)]
    [int] $StartTimeoutSeconds = 120,

    # set by the wrapper for the run inside the scheduled task
    [switch] $InTask
)

$ProgressPreference = 'SilentlyContinue'

function Write-AibxError([string] $Message) {
    [Console]::Error.WriteLine("aibx: $Message")
}

$UInt32Mask = [long]4294967295                    # 0xFFFFFFFF

function ConvertTo-ExitCode([long] $Code) {
    # exit codes are 32-bit: 0x80240016 from a task's last result becomes the same bits as a signed Int32
    $Code = $Code -band $UInt32Mask
    if ($Code -gt [int]::MaxValue) { $Code -= $UInt32Mask + 1 }
    return [int]$Code
}

function Copy-NewOutput([string] $Path, [long] $Position, [System.IO.Stream] $Target) {
    if (-not [System.IO.File]::Exists($Path)) { return $Position }
    $share = [System.IO.FileShare]::ReadWrite -bor [System.IO.FileShare]::Delete
    $stream = [System.IO.File]::Open($Path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, $share)
    try {
        if ($stream.Length -le $Position) { return $Position }
        $null = $stream.Seek($Position, [System.IO.SeekOrigin]::Begin)
        $buffer = New-Object byte[] 65536
        while (($n = $stream.Read($buffer, 0, $buffer.Length)) -gt 0) {
            $Target.Write($buffer, 0, $n)
            $Position += $n
        }
        $Target.Flush()
    } finally {
        $stream.Dispose()
    }
    return $Position
}

function Get-ResultText([long] $Code) {
    $hex = '{0:X8}' -f ($Code -band $UInt32Mask)
    $known = @{
        '00041303' = 'the task has not run yet'
        '00041301' = 'the task is still running'
        '8004131F' = 'an instance of the task is already running'
        '80070005' = 'access denied'
        '8007052E' = 'logon failure: unknown user name or bad password'
        '80070569' = 'logon failure: the user lacks the right to log on as a batch job'
        '800710E0' = 'the operator or administrator has refused the request'
        'C000013A' = 'the process was stopped (Ctrl+C)'
    }
    if ($known.ContainsKey($hex)) { return "0x$hex, $($known[$hex])" }
    if ($hex.StartsWith('8007')) {
        # an HRESULT wrapping a Win32 error: Windows knows the text
        $win32 = [Convert]::ToInt32($hex.Substring(4), 16)
        return "0x$hex, " + (New-Object System.ComponentModel.Win32Exception $win32).Message
    }
    return "0x$hex"
}

function Get-TaskEvents([string] $Name) {
    try {
        $xpath = "*[EventData[Data[@Name='TaskName']='\$Name']]"
        Get-WinEvent -LogName 'Microsoft-Windows-TaskScheduler/Operational' -FilterXPath $xpath -MaxEvents 5 -ErrorAction Stop |
            ForEach-Object { "  $($_.TimeCreated.ToString('s')) $($_.Message)" }
    } catch { }
}

function Invoke-Elevated {
    if (-not $TaskName) { $TaskName = 'aibx-' + [IO.Path]::GetFileNameWithoutExtension($ScriptPath) }
    $stdoutPath = "$ScriptPath.stdout"
    $stderrPath = "$ScriptPath.stderr"
    $powershell = Join-Path $PSHOME 'powershell.exe'
    if (-not (Test-Path -LiteralPath $powershell)) { $powershell = (Get-Process -Id $PID).Path }
    $cmd = Join-Path $env:SystemRoot 'System32\cmd.exe'
    $arguments = '/d /c ""' + $powershell + '" -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "' +
        $PSCommandPath + '" -ScriptPath "' + $ScriptPath + '" -InTask 1>>"' + $stdoutPath + '" 2>>"' + $stderrPath + '""'

    $service = New-Object -ComObject Schedule.Service
    $service.Connect()
    $folder = $service.GetFolder('\')
    $task = $service.NewTask(0)
    $task.RegistrationInfo.Description = "aibx: $ScriptPath"
    $task.Settings.Enabled = $true
    $task.Settings.Hidden = $true
    $task.Settings.AllowDemandStart = $true
    $task.Settings.DisallowStartIfOnBatteries = $false
    $task.Settings.StopIfGoingOnBatteries = $false
    $task.Settings.RunOnlyIfIdle = $false
    $task.Settings.MultipleInstances = 2          # TASK_INSTANCES_IGNORE_NEW
    $task.Settings.Priority = 4                   # normal, not the task default "below normal"
    $task.Settings.ExecutionTimeLimit = "PT$($TimeoutSeconds + 60)S"
    $task.Principal.RunLevel = 1                  # TASK_RUNLEVEL_HIGHEST
    if ($RunAs -eq 'System') {
        $user = 'S-1-5-18'                        # SYSTEM
        $logonType = 5                            # TASK_LOGON_SERVICE_ACCOUNT
    } else {
        $user = [System.Security.Principal.WindowsIdentity]::GetCurrent().Name
        $logonType = 2                            # TASK_LOGON_S4U: no password stored or needed
    }
    $task.Principal.UserId = $user
    $task.Principal.LogonType = $logonType
    $action = $task.Actions.Create(0)             # TASK_ACTION_EXEC
    $action.Path = $cmd
    $action.Arguments = $arguments
    $action.WorkingDirectory = Split-Path -Parent $ScriptPath

    $registered = $null
    $ours = @()                                   # the output files this wrapper created (only those are deleted)
    $stdout = [Console]::OpenStandardOutput()
    $stderr = [Console]::OpenStandardError()
    $outPos = 0L
    $errPos = 0L
    try {
        # The task (SYSTEM, or the user elevated) only appends to the output files: they are created here first,
        # exclusively (CreateNew fails on anything already there, a symbolic link or junction another user planted
        # at the name included, and follows none), so the task never writes through something planted.
        foreach ($path in @($stdoutPath, $stderrPath)) {
            try {
                $mode = [System.IO.FileMode]::CreateNew
                [System.IO.File]::Open($path, $mode, [System.IO.FileAccess]::Write, [System.IO.FileShare]::None).Dispose()
                $ours += $path
            } catch {
                Write-AibxError "cannot create $path (is something already there?): $($_.Exception.Message)"
                return 1
            }
        }
        try {
            $registered = $folder.RegisterTaskDefinition($TaskName, $task, 6, $user, $null, $logonType)
        } catch {
            Write-AibxError "cannot register the scheduled task '$TaskName' to run as ${user}: $($_.Exception.Message)"
            return 1
        }
        $null = $registered.Run($null)
        $clock = [System.Diagnostics.Stopwatch]::StartNew()
        $started = $false
        while ($true) {
            Start-Sleep -Milliseconds 250
            $outPos = Copy-NewOutput $stdoutPath $outPos $stdout
            $errPos = Copy-NewOutput $stderrPath $errPos $stderr
            $state = $registered.State            # 2 queued, 3 ready, 4 running
            $result = [long]$registered.LastTaskResult
            if ($state -eq 4 -or ($state -eq 3 -and $result -ne 0x41303)) { $started = $true }
            if ($started -and $state -eq 3 -and $result -ne 0x41301) { break }
            if (-not $started -and $clock.Elapsed.TotalSeconds -gt $StartTimeoutSeconds) {
                Write-AibxError ("the scheduled task '$TaskName' did not start within $StartTimeoutSeconds s " +
                    "(state $state, last result $(Get-ResultText $result))")
                Get-TaskEvents $TaskName | ForEach-Object { [Console]::Error.WriteLine($_) }
                try { $registered.Stop(0) } catch { }
                return 1
            }
            if ($clock.Elapsed.TotalSeconds -gt $TimeoutSeconds) {
                try { $registered.Stop(0) } catch { }
                Start-Sleep -Milliseconds 500
                $outPos = Copy-NewOutput $stdoutPath $outPos $stdout
                $errPos = Copy-NewOutput $stderrPath $errPos $stderr
                Write-AibxError "the elevated script did not finish within $TimeoutSeconds s; the task was stopped"
                return 1460                       # ERROR_TIMEOUT
            }
        }
        Start-Sleep -Milliseconds 100
        $outPos = Copy-NewOutput $stdoutPath $outPos $stdout
        $errPos = Copy-NewOutput $stderrPath $errPos $stderr
        $code = [long]$registered.LastTaskResult
        if ($code -ne 0) {
            Write-AibxError "the scheduled task '$TaskName' ($RunAs) finished with $(Get-ResultText $code)"
            if ($errPos -eq 0 -and $outPos -eq 0) {
                Get-TaskEvents $TaskName | ForEach-Object { [Console]::Error.WriteLine($_) }
            }
        }
        return $code
    } finally {
        if ($registered) { try { $folder.DeleteTask($TaskName, 0) } catch { } }
        foreach ($path in $ours) {
            try { [System.IO.File]::Delete($path) } catch { }
        }
    }
}

if ($RunAs -eq 'None') {
    # at script level, not in a function: the script's output must stream to the host, not become a return value
    if ($InTask) {
        # the task has its own hidden console: make its output UTF-8 like the WinRM shell's (code page 65001)
        try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }
    }
    $global:LASTEXITCODE = 0
    try {
        & $ScriptPath
    } catch {
        [Console]::Error.WriteLine(($_ | Out-String -Width 4096).TrimEnd())
        exit 1
    }
    if ($global:LASTEXITCODE -is [int]) { exit $global:LASTEXITCODE }
    exit 0
}
try {
    $code = Invoke-Elevated
} catch {
    Write-AibxError "elevation failed: $($_.Exception.Message)"
    exit 1
}
exit (ConvertTo-ExitCode $code)
